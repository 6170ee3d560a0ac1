"""The trending job end to end: PyFlink minicluster and the real broker, item and category counts
checked against the offline twin (udfs.trending.decayed_counts)."""
from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

import numpy as np
import pytest
from kafka import KafkaProducer

from jobs.config import TrendConfig
from jobs.kafka_io import Producer, TopicReader, produce, wait_committed
from jobs.trending_job import running
from udfs.trending import SCOPE_CATEGORY, SCOPE_ITEM, decayed_counts, parse_event_weights, parse_trend_record

pytestmark = pytest.mark.integration
TIMEOUT_S = 90
HALF_LIFE_MS = 3_600_000   # an hour: minutes apart, events already weigh differently
INTERVAL_MS = 60_000
WEIGHTS = "cart=2,purchase=3"
# Record timestamps (the watermarks' clock) are the events' own ts; recent, so no broker retention applies.
BASE = (int(time.time()) - 3600) * 1000

# (user, item, event, seconds after BASE), produced in time order. The first phase ends at 250 s,
# after every emit it schedules (first event + 60 s) is due.
EVENTS = (
    [(f"u{i % 3}", "a", ("view", "click", "cart", "purchase")[i % 4], i) for i in range(6)]   # one burst
    + [(f"u{i % 2}", "b", "view", 10 + i) for i in range(4)]                                  # a burst ...
    + [(f"u{i % 3}", "c", "click", 30 + 20 * i) for i in range(5)]                            # spread out
    + [("üser", "ü-item/1", "view", 150)]                                                   # any id goes
    + [("u0", "d", "view", 160), ("u1", "d", "cart", 161)]
    + [("u2", "b", "purchase", 300), ("u0", "b", "view", 301), ("u1", "b", "rate", 302)]       # ... and another
)
PHASE_END_S = 250
CATALOG = [("a", {"item_id": "a", "title": "A", "categories": ["Drama", "Comedy", "Drama"]}),
           ("b", {"item_id": "b", "text": "B", "categories": ["Drama"]}),
           ("d", {"item_id": "d", "title": "D", "categories": ["Horror"]}),
           ("d", None),                                             # deleted: d counts for no category
           ("x", {"item_id": "x", "categories": "Drama"})]          # bad: wrong_type
CATEGORIES = {"Drama": {"a", "b"}, "Comedy": {"a"}}
BAD_EVENTS = [  # (key, value, reason), logged among the good events
    ("u1", "{not json", "bad_json"),
    ("u1", {"user_id": "u1", "event": "view", "ts": BASE}, "missing_field"),
    ("u1", {"user_id": "u1", "item_id": "a", "event": "like", "ts": BASE}, "unknown_event"),
    ("u2", {"user_id": "u1", "item_id": "a", "event": "view", "ts": BASE}, "key_mismatch"),
    ("u1", {"user_id": "u1", "item_id": "a", "event": "view", "ts": 0}, "ts_out_of_range"),
]


def event_value(user: str, item: str, event: str, second: int) -> dict:
    return {"user_id": user, "item_id": item, "event": event, "ts": BASE + second * 1000}


def offline(items: set[str], weights: dict[str, float], at_ms: int) -> tuple[float, int]:
    """(decayed count at `at_ms`, number of events) of the good events on `items` up to `at_ms`: what
    the job must write."""
    rows = [e for e in EVENTS if e[1] in items and BASE + e[3] * 1000 <= at_ms]
    ts = np.array([BASE + s * 1000 for *_, s in rows], np.int64)
    w = np.array([weights[e] for _, _, e, _ in rows])
    return float(decayed_counts(np.zeros(len(rows), np.int64), ts, 1, at_ms, HALF_LIFE_MS, w)[0]), len(rows)


def items_of(key: str) -> set[str]:
    """The items a trend key counts: itself, or a category's items."""
    return CATEGORIES[key[len("category:"):]] if key.startswith("category:") else {key}


def send_events(bootstrap: str, topic: str, events: list[tuple], bad: list[tuple] = ()) -> None:
    """Good events in time order, record timestamp = their ts; `bad` records interleaved."""
    producer = Producer(bootstrap)
    bad = iter(bad)
    for n, (user, item, event, second) in enumerate(events):
        producer.send(topic, user, event_value(user, item, event, second), timestamp_ms=BASE + second * 1000)
        if n % 3 == 1 and (b := next(bad, None)) is not None:
            producer.send(topic, b[0], b[1], timestamp_ms=BASE + second * 1000)
    producer.flush()
    producer.close()


def flush(bootstrap: str, topic: str, partitions: int, second: int) -> None:
    """A forget record (valid, counts nothing) at `second` on every partition: the watermark (the
    minimum over partitions) passes every emit due by then, so those records are written now."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for p in range(partitions):
            value = json.dumps({"user_id": f"flush-{p}", "event": "forget", "ts": BASE + second * 1000})
            producer.send(topic, value=value.encode(), partition=p, timestamp_ms=BASE + second * 1000).get(timeout=30)
    finally:
        producer.close()


def latest_counts(records: list[dict]) -> dict[str, int]:
    return {r["key"]: r["value"]["events"] for r in records}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_trending_job_counts_items_and_categories(broker, parallelism):
    run = uuid.uuid4().hex[:8]
    topics = {k: f"{k}-{run}" for k in ("user-events", "item-catalog", "item-trends", "dead-letters")}
    broker.create_topics([topics["user-events"], topics["item-catalog"]], partitions=2)
    broker.create_topics([topics["item-trends"], topics["dead-letters"]], partitions=1)
    cfg = TrendConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                      catalog_topic=topics["item-catalog"], trends_topic=topics["item-trends"],
                      dead_letter_topic=topics["dead-letters"], group_id=f"it-{run}", job_name=f"it-trending-{run}",
                      half_life_ms=HALF_LIFE_MS, emit_interval_ms=INTERVAL_MS, event_weights=WEIGHTS,
                      checkpoint_interval_ms=1000, parallelism=parallelism)
    weights = parse_event_weights(WEIGHTS, cfg.event_type_names)
    catalog_ends = produce(broker.bootstrap_servers, topics["item-catalog"], CATALOG)
    out = TopicReader(broker.bootstrap_servers, topics["item-trends"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    expected_keys = {e[1] for e in EVENTS} | {f"category:{c}" for c in CATEGORIES}
    started = time.monotonic()
    try:
        with running(cfg):
            # Categories first: an event counts for the categories its item has when it is processed.
            # Offsets are committed on a checkpoint, after every operator has taken them into its state.
            wait_committed(broker.bootstrap_servers, cfg.group_id, topics["item-catalog"], catalog_ends, TIMEOUT_S)
            first = [e for e in EVENTS if e[3] < PHASE_END_S]
            send_events(broker.bootstrap_servers, topics["user-events"], first, BAD_EVENTS)
            flush(broker.bootstrap_servers, topics["user-events"], 2, PHASE_END_S)
            # Every emit due before 250 s is written: each key's latest record counts its first-phase events.
            phase1 = {k: sum(e[1] in items_of(k) for e in first) for k in expected_keys}
            phase1 = {k: n for k, n in phase1.items() if n}
            out.read_until(lambda rs: latest_counts(rs) == phase1, TIMEOUT_S)
            assert latest_counts(out.records) == phase1
            # Then b's second burst, and a day later on every partition: the last emits are written.
            send_events(broker.bootstrap_servers, topics["user-events"], [e for e in EVENTS if e[3] >= PHASE_END_S])
            flush(broker.bootstrap_servers, topics["user-events"], 2, 86_400)
            expected_events = {k: sum(e[1] in items_of(k) for e in EVENTS) for k in expected_keys}
            records = out.read_until(lambda rs: latest_counts(rs) == expected_events, TIMEOUT_S)
            dead_records = dead.read_until(lambda rs: len(rs) >= len(BAD_EVENTS) + 1, 30)
    finally:
        out.close()
        dead.close()
    print(f"trending job: {len(records)} records in {time.monotonic() - started:.1f} s")

    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        # every record honours the contract the ranking job reads, key included
        record = parse_trend_record(json.dumps(r["value"]), r["key"])
        assert record.half_life_ms == HALF_LIFE_MS
        by_key[r["key"]].append(r["value"])
    assert set(by_key) == expected_keys, "none for forget records, d's deleted category or the bad item x"

    for key, values in by_key.items():
        items = items_of(key)
        for value in values:
            # each record is the offline count of the events up to its `at`, the newest one it counts
            # (a timer fires once the watermark is past everything logged before it)
            score, n = offline(items, weights, value["at"])
            assert value["events"] == n, (key, value)
            assert value["score"] == pytest.approx(score, rel=1e-6), (key, value)
            assert value["scope"] == (SCOPE_CATEGORY if key.startswith("category:") else SCOPE_ITEM)
        assert values[-1]["at"] == max(BASE + s * 1000 for _, i, _, s in EVENTS if i in items)
        # the throttle: a burst within one interval is one record
        assert len(values) < values[-1]["events"] or values[-1]["events"] == 1, (key, len(values))
    counts = {k: len(v) for k, v in by_key.items()}
    assert {k: counts[k] for k in ("a", "d", "ü-item/1", "category:Comedy")} == \
        {"a": 1, "d": 1, "ü-item/1": 1, "category:Comedy": 1}
    # one record per phase: the count carries on after an emit, and the next event schedules the next one
    assert counts["b"] == 2 and counts["category:Drama"] == 2
    assert [v["events"] for v in by_key["b"]] == [4, 7]
    assert 1 <= counts["c"] <= 2 and len(records) < len(EVENTS)

    reasons = sorted(r["value"]["reason"] for r in dead_records)
    assert reasons == sorted([reason for *_, reason in BAD_EVENTS] + ["wrong_type"])
    catalog_dead = [r["value"] for r in dead_records if r["value"]["reason"] == "wrong_type"]
    assert catalog_dead[0]["topic"] == topics["item-catalog"]
    assert all(r["value"]["topic"] == topics["user-events"] for r in dead_records if r["value"]["reason"] != "wrong_type")
