"""The Kafka tables a job reads and writes, as Flink SQL DDL: one definition for every job.

Every input is read raw (bytes key and value, plus topic/partition/offset/timestamp metadata) and
parsed in Python, so a bad record becomes a dead letter naming its offset instead of a
deserialization failure; every output is a raw string value with an optional string key.
(jobs/rerank_job.py declares the same tables inline, from before a second job existed; it can move
onto these.)
"""
from __future__ import annotations

from jobs.config import JobConfig
from jobs.rerank_job import _kafka_options, _sink_options


def raw_source_ddl(cfg: JobConfig, table: str, topics: str, watermark: bool = False) -> str:
    """A source over `topics` (';'-separated), read from the job's consumer group; one row per record:
    (topic, partition, offset, ts, key BYTES, value BYTES). `watermark`: per-partition watermarks on ts."""
    options = _kafka_options(cfg, topics, **{
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
        WITH ({_sink_options(cfg, topic, **{'key.format': 'raw', 'key.fields': 'k',
                                            'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY'})})"""


def value_sink_ddl(cfg: JobConfig, table: str, topic: str) -> str:
    """A sink of (v STRING) rows, no key (dead letters)."""
    return f"""
        CREATE TEMPORARY TABLE {table} (`v` STRING)
        WITH ({_sink_options(cfg, topic, format='raw')})"""
