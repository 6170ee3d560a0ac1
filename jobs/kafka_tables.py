"""The Kafka tables a job reads and writes, as Flink SQL DDL: one definition for every job.

Every input is read raw (bytes key and value, plus topic/partition/offset/timestamp metadata) and
parsed in Python, so a bad record becomes a dead letter naming its offset instead of a
deserialization failure; every output is a raw string value with an optional string key.
`keyed_by` turns such a table, with a key column computed in SQL, into a keyed DataStream.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyflink.common import Types
from pyflink.common.typeinfo import RowTypeInfo

from jobs.config import JobConfig

if TYPE_CHECKING:
    from pyflink.datastream import KeyedStream
    from pyflink.table import StreamTableEnvironment, Table

# (topic, partition, offset, record timestamp, value, key): one Kafka record as a raw source table reads it.
RAW_RECORD = Types.ROW([Types.STRING(), Types.INT(), Types.LONG(), Types.INSTANT(), Types.PRIMITIVE_ARRAY(Types.BYTE()),
                        Types.PRIMITIVE_ARRAY(Types.BYTE())])


def kafka_options(cfg: JobConfig, topic: str | None, **extra: str) -> str:
    """WITH (...) options of a Kafka table: the job's own, then the user's pass-through client
    properties (`--kafka-property`, `--kafka-properties-file`: TLS, SASL) as `properties.*`.
    `topic` None: the caller gives `topic-pattern` in `extra`."""
    options = {"connector": "kafka", **({"topic": topic} if topic else {}),
               "properties.bootstrap.servers": cfg.bootstrap_servers, **extra,
               **{f"properties.{k}": v for k, v in cfg.kafka_properties.items()}}
    # SQL string literals: a quote is doubled (sasl.jaas.config values carry quotes and semicolons).
    return ", ".join(f"'{sql_quote(k)}' = '{sql_quote(v)}'" for k, v in options.items())


def sql_quote(text: str) -> str:
    return text.replace("'", "''")


def sink_options(cfg: JobConfig, topic: str, **extra: str) -> str:
    guarantee = cfg.delivery_guarantee.lower().replace("_", "-")
    return kafka_options(cfg, topic, **{"sink.delivery-guarantee": guarantee,
                                        "sink.transactional-id-prefix": f"{cfg.group_id}-{topic}",
                                        "properties.linger.ms": str(cfg.sink_linger_ms), **extra})


def raw_source_ddl(cfg: JobConfig, table: str, topics: str, watermark: bool = False, **extra: str) -> str:
    """A source over `topics` (';'-separated), read from the job's consumer group; one row per record:
    (topic, partition, offset, ts, key BYTES, value BYTES). `watermark`: per-partition watermarks on ts.
    `extra`: more table options (e.g. 'scan.watermark.idle-timeout')."""
    options = kafka_options(cfg, topics, **{
        'properties.group.id': cfg.group_id,
        'properties.auto.offset.reset': 'earliest',
        'scan.startup.mode': cfg.startup_mode,
        'properties.fetch.max.wait.ms': str(cfg.fetch_max_wait_ms),
        'key.format': 'raw', 'key.fields': 'key',
        'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY', **extra})
    mark = ",\n            WATERMARK FOR `ts` AS `ts`" if watermark else ""
    return f"""
        CREATE TEMPORARY TABLE {table} (
            `topic` STRING METADATA VIRTUAL,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
            `key` BYTES,
            `value` BYTES{mark}
        ) WITH ({options})"""


def keyed_sink_ddl(cfg: JobConfig, table: str, topic: str) -> str:
    """A sink of (k STRING, v STRING) rows: k is the Kafka key (raw), v the value (raw)."""
    return f"""
        CREATE TEMPORARY TABLE {table} (`k` STRING, `v` STRING)
        WITH ({sink_options(cfg, topic, **{'key.format': 'raw', 'key.fields': 'k',
                                            'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY'})})"""


def value_sink_ddl(cfg: JobConfig, table: str, topic: str) -> str:
    """A sink of (v STRING) rows, no key (dead letters)."""
    return f"""
        CREATE TEMPORARY TABLE {table} (`v` STRING)
        WITH ({sink_options(cfg, topic, format='raw')})"""


def keyed_by(t_env: "StreamTableEnvironment", table: "Table", row_type: RowTypeInfo = RAW_RECORD) -> "KeyedStream":
    """(key STRING, row) rows -> a stream of the rows (`row_type`) keyed by the key, in the JVM.

    DataStream.key_by always runs a Python key selector: one more JVM <-> Python crossing per
    record. Here the key is extracted in SQL and the stream is keyed with the Java selector that
    PyFlink's own key_by uses on the rows its Python selector produces. A keyed Python function
    then sees the key as ROW<STRING> (a Row, or its one field).
    """
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    from jobs.planning import to_append_stream  # jobs.planning imports this module

    # Typed as a RowTypeInfo (to_data_stream's ExternalTypeInfo is not what keyed Python operators expect).
    stream = to_append_stream(t_env, table, Types.ROW([Types.STRING(), row_type]))
    keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                       Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(keyed, row_type, stream)
