"""The Kafka tables a job reads and writes, as Flink SQL DDL: one definition for every job.

Every input is read raw (bytes key and value, plus topic/partition/offset/timestamp metadata) and
parsed in Python, so a bad record becomes a dead letter naming its offset instead of a
deserialization failure; every output is a raw string value with an optional string key.
"""
from __future__ import annotations

from jobs.config import JobConfig


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


def raw_source_ddl(cfg: JobConfig, table: str, topics: str, watermark: bool = False) -> str:
    """A source over `topics` (';'-separated), read from the job's consumer group; one row per record:
    (topic, partition, offset, ts, key BYTES, value BYTES). `watermark`: per-partition watermarks on ts."""
    options = kafka_options(cfg, topics, **{
        'properties.group.id': cfg.group_id,
        'properties.auto.offset.reset': 'earliest',
        'scan.startup.mode': cfg.startup_mode,
        'properties.fetch.max.wait.ms': str(cfg.fetch_max_wait_ms),
        'key.format': 'raw', 'key.fields': 'key',
        'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY'})
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
