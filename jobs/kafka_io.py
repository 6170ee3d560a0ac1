"""Client-side Kafka helpers for the demo, the replay tool and tests (kafka-python).

What a service around the job does: produce JSON records and learn their exact offsets, read an
output topic from the beginning, and wait until the job has committed its input offsets.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.producer.future import FutureRecordMetadata

from udfs.errors import RerankError

log = logging.getLogger(__name__)
Record = tuple[str | None, Any]


def _encode(value: Any) -> bytes | None:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        value = value.encode()
    return value


def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> dict[int, int]:
    """Send (key, value) pairs (dicts are JSON-encoded) and wait for every ack.

    Returns the end offset (last offset + 1) per partition written, taken from the delivery
    reports: brokers' reported high watermarks are not trusted (Tansu's is wrong for batches).
    """
    producer = Producer(bootstrap)
    try:
        futures = [producer.send(topic, k, v) for k, v in records]
        producer.flush()
        ends: dict[int, int] = {}
        for f in futures:
            meta = f.get(timeout=60)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        producer.close()


class Producer:
    """A producer of JSON records: `produce` uses one per batch, the replay tool one for the whole run."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")

    def send(self, topic: str, key: str | None, value: Any, timestamp_ms: int | None = None) -> FutureRecordMetadata:
        """Queue one record (dict values are JSON-encoded); the future resolves to its offset."""
        return self._producer.send(topic, key=None if key is None else key.encode(), value=_encode(value),
                                   timestamp_ms=timestamp_ms)

    def flush(self) -> None:
        self._producer.flush(60)

    def close(self) -> None:
        self._producer.close()


class TopicReader:
    """Reads a topic from the beginning by partition assignment (no consumer-group join)."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted") -> None:
        # A short fetch wait: latency is measured on receipt, and some brokers hold every fetch
        # for the full wait even when data is there. `read_committed` reads what a consumer of an
        # EXACTLY_ONCE job reads (records of committed transactions only, on a broker that filters).
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                      isolation_level=isolation_level)
        partitions = self.consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list[dict[str, Any]] = []

    def poll(self, timeout_ms: int = 200) -> list[dict[str, Any]]:
        """New records since the last call: key, JSON value (None for a tombstone), partition, local receive time (ms)."""
        new = []
        for tp_records in self.consumer.poll(timeout_ms=timeout_ms).values():
            now = int(time.time() * 1000)
            for r in tp_records:
                # A null value is a tombstone (compacted topics: the key's record is deleted).
                value = None if r.value is None else json.loads(r.value)
                new.append({"key": None if r.key is None else r.key.decode(), "value": value,
                            "partition": r.partition, "received_at": now})
        self.records.extend(new)
        return new

    def read_until(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float,
                   settle_s: float = 1.0) -> list[dict[str, Any]]:
        """Poll until `predicate(records)` holds (then `settle_s` more, to catch duplicates) or timeout."""
        deadline = time.monotonic() + timeout_s
        settled_at = None
        while time.monotonic() < deadline:
            self.poll()
            if settled_at is None and predicate(self.records):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                break
        return self.records

    def close(self) -> None:
        self.consumer.close()


def wait_committed(bootstrap: str, group_id: str, topic: str, end_offsets: dict[int, int],
                   timeout_s: float) -> None:
    """Block until `group_id` has committed at least `end_offsets` on `topic`.

    The job commits source offsets when a checkpoint completes, so this means every record up to
    those offsets has been consumed and is part of the job's state.
    """
    # committed() is a plain OffsetFetch: it reads the group's offsets without joining the group.
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    committed: dict[int, int] = {}
    try:
        while time.monotonic() < deadline:
            committed = {p: reader.committed(TopicPartition(topic, p)) or 0 for p in end_offsets}
            if all(committed[p] >= end for p, end in end_offsets.items()):
                return
            time.sleep(0.5)
    finally:
        reader.close(autocommit=False)
    raise RerankError(f"group {group_id} committed {committed} on {topic}, expected {end_offsets} "
                      f"within {timeout_s}s")
