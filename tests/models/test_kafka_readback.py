"""Training input read back from the events topic between two record timestamps (real broker)."""
from __future__ import annotations

import json

import pytest

from jobs.kafka_io import Producer
from models.errors import DataError
from models.eventlog import load_event_data

T0 = 1_700_000_000_000


def _event(user: str, item: str, ts: int, event: str = "view") -> dict:
    return {"user_id": user, "item_id": item, "event": event, "ts": ts}


@pytest.mark.integration
def test_read_back_between_timestamps(broker, topics) -> None:
    topic = topics["user-events"]
    producer = Producer(broker.bootstrap_servers)
    sent = []
    # Record timestamps 0..29 s after T0; the window [10 s, 20 s) holds records 10..19.
    for k in range(30):
        user = f"u{k % 6}"  # u5 hashes to the other partition of two
        value = _event(user, f"i{k}", T0 + 1000 * k, "view" if k % 2 else "like")
        if k == 12:
            value = '{"user_id": "u0", "item_id": "i12", "event": "view", "ts": "soon"}'  # bad row in the window
        if k == 25:
            value = "not json"  # bad, but outside the window: never read
        sent.append(producer.send(topic, user, value, timestamp_ms=T0 + 1000 * k))
    producer.flush()
    parts = {f.get(timeout=30).partition for f in sent}
    producer.close()
    assert len(parts) == 2  # the read must cover every partition

    lo, hi = T0 + 10_000, T0 + 20_000
    with pytest.raises(DataError, match=rf"kafka {topic}/\d@\d+: .*'ts'.*\[wrong_type\]"):
        load_event_data(bootstrap_servers=broker.bootstrap_servers, topic=topic, from_ms=lo, to_ms=hi)
    data = load_event_data(bootstrap_servers=broker.bootstrap_servers, topic=topic, from_ms=lo, to_ms=hi,
                           skip_invalid=True)
    got = sorted(str(data.log.item_ids[i]) for i in data.log.items)
    assert got == sorted(f"i{k}" for k in range(10, 20) if k != 12)
    assert data.description["skipped_rows"] == {"wrong_type": 1}
    assert data.description["dataset"] == topic and data.description["sources"][0].startswith("kafka://")
    # Each user's events in ts order; names from the data ("like" is not a contract name).
    for u in range(data.log.n_users):
        ts = data.log.ts[data.log.user_slice(u)]
        assert (ts[1:] >= ts[:-1]).all()
    assert set(data.log.event_names) == {"view", "like"}
    # Open-ended: everything from the first record on, the bad ones skipped.
    everything = load_event_data(bootstrap_servers=broker.bootstrap_servers, topic=topic, skip_invalid=True)
    assert everything.description["interactions"] == 28


@pytest.mark.integration
def test_read_back_checks_the_key(broker, topics) -> None:
    topic = topics["user-events"]
    producer = Producer(broker.bootstrap_servers)
    producer.send(topic, "u1", _event("u1", "a", T0), timestamp_ms=T0)
    producer.send(topic, "someone-else", json.dumps(_event("u1", "b", T0 + 1)), timestamp_ms=T0 + 1)
    producer.flush()
    producer.close()
    with pytest.raises(DataError, match=r"key_mismatch"):
        load_event_data(bootstrap_servers=broker.bootstrap_servers, topic=topic)
    with pytest.raises(DataError, match="not found"):
        load_event_data(bootstrap_servers=broker.bootstrap_servers, topic="no-such-topic-x")
