"""The job's DataStream functions: thin Flink wrappers around `records`, `history` and `ranking`."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Iterable

from pyflink.common import Row, Time, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, MapFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from udfs.errors import InvalidRecord
from udfs.history import UserHistory, append_event
from udfs.ranking import ranked_list, to_json
from udfs.records import EVENT_TYPES, FORGET_EVENT, Limits, RankRequest, UserEvent, dead_letter, parse_record

log = logging.getLogger(__name__)
DEAD_LETTER_ROW = Types.ROW_NAMED(["v"], [Types.STRING()])
DEAD_LETTERS = OutputTag("dead-letters", DEAD_LETTER_ROW)

# One row per rank request, ready for the scoring UDF.
SCORING_ROW = Types.ROW_NAMED(
    ["request_id", "user_id", "hist_items", "hist_events", "candidates", "k", "history_len", "ts"],
    [Types.STRING(), Types.STRING(), Types.BASIC_ARRAY(Types.STRING()), Types.BASIC_ARRAY(Types.STRING()),
     Types.BASIC_ARRAY(Types.STRING()), Types.INT(), Types.LONG(), Types.LONG()])

# A Kafka record to write: key (user id, may be null) and value.
KEYED_VALUE = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])


def epoch_ms(instant: Any) -> int:
    """A Kafka record timestamp as delivered to Python -> epoch ms.

    Thread mode hands over the java.time.Instant itself; process mode a pyflink Instant.
    """
    if hasattr(instant, "toEpochMilli"):
        return int(instant.toEpochMilli())
    return int(instant.to_epoch_milli())


def state_ttl(descriptor: ValueStateDescriptor, ttl_ms: int) -> ValueStateDescriptor:
    """`descriptor` with a time-to-live: idle users are evicted, per-user state never grows without bound."""
    descriptor.enable_time_to_live(
        StateTtlConfig.new_builder(Time.milliseconds(ttl_ms))  # 2.3 wants Time, not Duration
        .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
        # Flink's default background cleanup, spelled out: PyFlink builds its default RocksDB
        # strategy with a py4j Duration, and a TaskManager's thread-mode worker has no py4j
        # gateway (on a real cluster open() fails). Same values, no gateway needed.
        .disable_cleanup_in_background()
        .cleanup_incrementally(5, False)
        .cleanup_in_rocksdb_compact_filter(1000, Time.days(30))
        .build())
    return descriptor


class DeadLetters:
    """Counts dead letters in total and per reason code (a `reason` label in Prometheus)."""

    def __init__(self, group) -> None:
        from udfs.records import Reason

        self.total = group.counter("dead_letters")
        self.by_reason = {r.value: group.add_group("reason", r.value).counter("dead_letters") for r in Reason}

    def record(self, topic: str, partition: int, offset: int, exc: InvalidRecord, payload, redact: bool = False) -> Row:
        """The dead-letter row; `redact` (pseudonymization on): no detail and no payload, which may
        hold raw ids; the step and reason code remain."""
        self.total.inc()
        self.by_reason.get(exc.reason, self.by_reason["invalid"]).inc()
        error = f"{exc.step}: detail withheld, ids are pseudonymized [{exc.reason}]" if redact else str(exc)
        log.debug("dead letter %s/%s@%s: %s", topic, partition, offset, error)
        return Row(dead_letter(topic, partition, offset, error, payload, reason=exc.reason, redact=redact))


class ParseRecords(ProcessFunction):
    """(topic, partition, offset, timestamp, value bytes, key bytes) -> (log_ts, UserEvent | RankRequest);
    bad records -> DEAD_LETTERS."""

    def __init__(self, events_topic: str, requests_topic: str, limits: Limits) -> None:
        self.events_topic = events_topic
        self.requests_topic = requests_topic
        self.limits = limits

    def open(self, runtime_context: RuntimeContext) -> None:
        self.dead = DeadLetters(runtime_context.get_metrics_group().add_group("rerank"))

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterable:
        topic, partition, offset, logged, payload, key = value[0], value[1], value[2], value[3], value[4], value[5]
        try:
            yield epoch_ms(logged), parse_record(topic, payload, key, self.events_topic, self.requests_topic,
                                                 self.limits)
        except InvalidRecord as exc:
            yield DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload)


class UserState(KeyedProcessFunction):
    """The pandas-UDF path's keyed step (`--scoring pandas`; the default path is udfs/rerank.py).

    Keyed by user: folds events into the user's rolling history; turns requests into scoring rows.

    A request is answered with the user's events logged to Kafka at or before the request itself
    (record timestamps). The two topics are read by independent split readers, so an event
    produced just before a request can be consumed just after it: with `hold_ms > 0` the request
    waits that long (processing time) for such stragglers, and events logged after the request
    are excluded either way.
    """

    # Room in the stored window for events that arrive while requests wait.
    SLACK = 64

    def __init__(self, max_len: int, half_life_ms: int, ttl_ms: int, hold_ms: int,
                 event_types: tuple[str, ...] = EVENT_TYPES) -> None:
        self.event_types = event_types
        self.max_len = max_len
        self.half_life_ms = half_life_ms
        self.ttl_ms = ttl_ms
        self.hold_ms = hold_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.history = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("user-history", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        # Requests waiting for `hold_ms`: JSON list of [due_ms, log_ts, request fields].
        self.pending = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("pending-requests", Types.STRING()), self.ttl_ms))
        group = runtime_context.get_metrics_group().add_group("rerank")
        self.events = group.counter("events")
        self.requests = group.counter("requests")

    def process_element(self, value: tuple[int, UserEvent | RankRequest],
                        ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        log_ts, record = value
        if isinstance(record, UserEvent):
            if record.event == FORGET_EVENT:
                # Waiting requests were logged before the forget record: answer them first.
                history = UserHistory.from_bytes(self.history.value(), self.event_types)
                for _, log_ts_p, fields in json.loads(self.pending.value() or "[]"):
                    fields["candidates"] = tuple(fields["candidates"])
                    yield self._answer(history, log_ts_p, RankRequest(**fields))
                self.history.clear()
                self.pending.clear()
                return
            self.events.inc()
            self.history.update(append_event(self.history.value(), record, log_ts, self.max_len + self.SLACK,
                                             self.half_life_ms, self.event_types))
            return
        self.requests.inc()
        if self.hold_ms == 0:
            yield self._answer(UserHistory.from_bytes(self.history.value(), self.event_types), log_ts, record)
            return
        due = ctx.timer_service().current_processing_time() + self.hold_ms
        pending = json.loads(self.pending.value() or "[]")
        pending.append([due, log_ts, dataclasses.asdict(record)])
        self.pending.update(json.dumps(pending))
        ctx.timer_service().register_processing_time_timer(due)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        pending = json.loads(self.pending.value() or "[]")
        due_now = [p for p in pending if p[0] <= timestamp]
        later = [p for p in pending if p[0] > timestamp]
        if later:
            self.pending.update(json.dumps(later))
        else:
            self.pending.clear()
        history = UserHistory.from_bytes(self.history.value(), self.event_types)
        for _, log_ts, fields in due_now:
            fields["candidates"] = tuple(fields["candidates"])
            yield self._answer(history, log_ts, RankRequest(**fields))

    def _answer(self, history: UserHistory, log_ts: int, request: RankRequest) -> Row:
        seen = history.as_of(log_ts, self.max_len)
        k = len(request.candidates) if request.k is None else min(request.k, len(request.candidates))
        # (request_id, user_id, [item]*<=L, [event]*<=L, [candidate]*C, k, history_len, ts)
        return Row(request.request_id, request.user_id, seen.items, seen.events, list(request.candidates),
                   k, seen.count, request.ts)


class AssembleRankedList(MapFunction):
    """Scored row -> (user_id, ranked-list JSON), the Kafka record of `ranked-lists`."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        self.ranked = self.fallbacks = None

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group("rerank")
        self.ranked = group.counter("ranked_lists")
        self.fallbacks = group.counter("fallback_lists")

    def map(self, row: Row) -> Row:
        scores = row["scores"]
        record = ranked_list(
            request_id=row["request_id"], user_id=row["user_id"], candidates=list(row["candidates"]),
            scores=None if scores is None else list(scores), k=row["k"], model_version=self.model_version,
            history_len=row["history_len"], ts=row["ts"], emitted_at=int(time.time() * 1000))
        if self.ranked is not None:
            self.ranked.inc()
            if record["fallback"]:
                self.fallbacks.inc()
        return Row(row["user_id"], to_json(record))

    __call__ = map
