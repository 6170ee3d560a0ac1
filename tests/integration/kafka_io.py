"""Producing to and reading from the test broker with kafka-python (what a user's service would do)."""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def produce(bootstrap: str, topic: str, records: Iterable[tuple[str | None, Any]]) -> int:
    """Send (key, value) pairs; dict values are JSON-encoded, bytes/str sent as they are. Waits for acks."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    futures = []
    for key, value in records:
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        futures.append(producer.send(topic, key=None if key is None else key.encode(), value=value))
    producer.flush(30)
    for f in futures:
        f.get(timeout=30)
    producer.close()
    return len(futures)


class TopicReader:
    """Reads a topic from the beginning by partition assignment (no consumer-group join)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      auto_offset_reset="earliest", consumer_timeout_ms=500)
        partitions = self.consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list[dict[str, Any]] = []

    def read_until(self, predicate, timeout_s: float, settle_s: float = 1.0) -> list[dict[str, Any]]:
        """Poll until `predicate(records)` holds (then `settle_s` more, to catch duplicates) or timeout."""
        deadline = time.monotonic() + timeout_s
        settled_at = None
        while time.monotonic() < deadline:
            for tp_records in self.consumer.poll(timeout_ms=200).values():
                for r in tp_records:
                    self.records.append({"key": None if r.key is None else r.key.decode(),
                                         "value": json.loads(r.value), "partition": r.partition})
            if settled_at is None and predicate(self.records):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                break
        return self.records

    def close(self) -> None:
        self.consumer.close()
