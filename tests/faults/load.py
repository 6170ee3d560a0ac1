"""Steady load with exact bookkeeping, and the black-box checks of the fault tests.

`SteadyLoad` sends events and rank requests for a fixed set of users from a background thread at a
fixed rate, each record with a strictly increasing timestamp (Kafka record timestamp = value `ts`),
and remembers what it sent. What a request must see is then known exactly: the user's events whose
timestamp is at or before the request's (README, "Which events a request sees"), i.e. the events of
that user sent before it. The checks read only the topic contract (`ranked-lists` records), so they
hold whatever the job does inside.

Its producer keeps retrying while the broker is down (records are buffered, then delivered in
order), so the load goes on across a broker restart; a record whose delivery finally failed is
counted in `failed` and fails the check rather than going missing silently.
"""
from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from jobs.dedup import Deduplicator
from jobs.kafka_io import Producer

log = logging.getLogger(__name__)
EVENT_TYPES = ("view", "click", "cart", "purchase", "rate")


@dataclass
class SentRequest:
    request_id: str
    user_id: str
    ts: int
    events_before: int   # events of this user sent before it: the history_len it must be answered with


@dataclass
class SteadyLoad:
    """`events_per_s` events and `requests_per_s` requests over `users` users, until stop()."""

    bootstrap: str
    events_topic: str
    requests_topic: str
    users: int = 40
    events_per_s: float = 40.0
    requests_per_s: float = 8.0
    items: int = 3000
    candidates: int = 20
    seed: int = 7
    tag: str = "r"
    requests: list[SentRequest] = field(default_factory=list)
    events_per_user: collections.Counter = field(default_factory=collections.Counter)
    failed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._last_ts = 0
        self._lock = threading.Lock()

    @property
    def user_ids(self) -> list[str]:
        return [f"{self.tag}-u{i}" for i in range(self.users)]

    def _next_ts(self) -> int:
        # Strictly increasing: no two records share a millisecond, so "before" is unambiguous.
        self._last_ts = max(self._last_ts + 1, int(time.time() * 1000))
        return self._last_ts

    def _on_error(self, what: str):
        def record(exc: BaseException) -> None:
            log.error("delivery failed for %s: %s", what, exc)
            self.failed.append(what)
        return record

    def send_events(self, user: str, n: int, rng: random.Random) -> None:
        for _ in range(n):
            ts = self._next_ts()
            value = {"user_id": user, "item_id": str(rng.randrange(1, self.items)),
                     "event": rng.choice(EVENT_TYPES), "ts": ts}
            self._producer.send(self.events_topic, user, value, timestamp_ms=ts).add_errback(
                self._on_error(f"event {user}@{ts}"))
            with self._lock:
                self.events_per_user[user] += 1

    def send_request(self, user: str, rng: random.Random) -> None:
        ts = self._next_ts()
        with self._lock:
            req = SentRequest(f"{self.tag}-{len(self.requests)}", user, ts, self.events_per_user[user])
            self.requests.append(req)
        value = {"request_id": req.request_id, "user_id": user, "ts": ts,
                 "candidates": [str(rng.randrange(1, self.items)) for _ in range(self.candidates)]}
        self._producer.send(self.requests_topic, user, value, timestamp_ms=ts).add_errback(
            self._on_error(f"request {req.request_id}"))

    def _run(self) -> None:
        rng = random.Random(self.seed)
        users = self.user_ids
        tick = 1.0 / self.requests_per_s
        per_request = self.events_per_s / self.requests_per_s
        owed = 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            owed += per_request
            for _ in range(int(owed)):
                self.send_events(rng.choice(users), 1, rng)
            owed -= int(owed)
            self.send_request(rng.choice(users), rng)
            next_at += tick
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> "SteadyLoad":
        """Every user gets 3 events first (so no request is a cold-start fallback), then the load."""
        self._producer = Producer(self.bootstrap)
        rng = random.Random(self.seed + 1)
        for user in self.user_ids:
            self.send_events(user, 3, rng)
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait until every record sent is acknowledged (or has failed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._producer is not None:
            self._producer.flush()
            self._producer.close()

    @property
    def request_ids(self) -> set[str]:
        with self._lock:
            return {r.request_id for r in self.requests}


def check_answers(sent: Iterable[SentRequest], ranked: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Assert the fault-tolerance promises on what a consumer of `ranked-lists` read.

    - every request sent is answered at least once, and nothing is answered that was not asked;
    - copies of one answer are identical apart from `emitted_at`;
    - each answer's `history_len` equals the events of its user sent before it: none lost, none
      applied twice, across whatever failed in between;
    - `jobs.dedup.Deduplicator` passes exactly one list per request (no conflicts).
    Returns counts for the test's log: answers, distinct requests, duplicate copies.
    """
    sent = {r.request_id: r for r in sent}
    ranked = list(ranked)
    copies: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for r in ranked:
        copies[r["request_id"]].append(r)
    missing = sorted(set(sent) - set(copies))
    assert not missing, f"{len(missing)} of {len(sent)} requests never answered, e.g. {missing[:5]}"
    invented = sorted(set(copies) - set(sent))
    assert not invented, f"answers to requests never sent: {invented[:5]}"
    for rid, lists in copies.items():
        stable = [{k: v for k, v in c.items() if k != "emitted_at"} for c in lists]
        assert all(s == stable[0] for s in stable), f"copies of {rid} differ beyond emitted_at: {stable}"
    wrong = [(rid, sent[rid].events_before, lists[0]["history_len"]) for rid, lists in copies.items()
             if lists[0]["history_len"] != sent[rid].events_before]
    assert not wrong, (f"{len(wrong)} answers with a history other than the events sent before them "
                       f"(request, expected, got), e.g. {wrong[:10]}")
    dedup = Deduplicator()
    passed = [r["request_id"] for r in ranked if dedup.accept(r)]
    assert sorted(passed) == sorted(sent), "the deduplicator must pass exactly one list per request"
    assert dedup.stats()["conflicts"] == 0 and dedup.stats()["duplicates"] == len(ranked) - len(sent)
    return {"answers": len(ranked), "requests": len(sent), "duplicates": len(ranked) - len(sent)}
