"""The job's DataStream functions: thin Flink wrappers around `records`, `history` and `ranking`."""
from __future__ import annotations

import logging
import time
from typing import Iterable

from pyflink.common import Row, Time, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from udfs.errors import InvalidRecord
from udfs.history import UserHistory, apply_event
from udfs.ranking import ranked_list, to_json
from udfs.records import RankRequest, UserEvent, dead_letter, parse_event, parse_request

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


class ParseRecords(ProcessFunction):
    """(topic, partition, offset, value bytes) -> UserEvent | RankRequest; bad ones -> DEAD_LETTERS."""

    def __init__(self, events_topic: str, requests_topic: str, max_candidates: int) -> None:
        self.events_topic = events_topic
        self.requests_topic = requests_topic
        self.max_candidates = max_candidates

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group("rerank")
        self.dead = group.counter("dead_letters")

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterable:
        topic, partition, offset, payload = value[0], value[1], value[2], value[3]
        try:
            if topic == self.events_topic:
                yield parse_event(payload)
            elif topic == self.requests_topic:
                yield parse_request(payload, self.max_candidates)
            else:
                raise InvalidRecord("route", f"record from unexpected topic {topic!r}")
        except InvalidRecord as exc:
            self.dead.inc()
            log.debug("dead letter %s/%s@%s: %s", topic, partition, offset, exc)
            yield DEAD_LETTERS, Row(dead_letter(topic, partition, offset, str(exc), payload))


class UserState(KeyedProcessFunction):
    """Keyed by user: folds events into the user's rolling history; turns requests into scoring rows.

    Records of one user are processed in the order the job consumed them, so a request sees every
    event of its user consumed before it.
    """

    def __init__(self, max_len: int, half_life_ms: int, ttl_ms: int) -> None:
        self.max_len = max_len
        self.half_life_ms = half_life_ms
        self.ttl_ms = ttl_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        descriptor = ValueStateDescriptor("user-history", Types.STRING())
        # Idle users are evicted: per-user state must not grow without bound.
        descriptor.enable_time_to_live(
            StateTtlConfig.new_builder(Time.milliseconds(self.ttl_ms))  # 2.3 wants Time, not Duration
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build())
        self.history = runtime_context.get_state(descriptor)
        group = runtime_context.get_metrics_group().add_group("rerank")
        self.events = group.counter("events")
        self.requests = group.counter("requests")

    def process_element(self, value: UserEvent | RankRequest, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        history = UserHistory.from_json(self.history.value())
        if isinstance(value, UserEvent):
            self.events.inc()
            self.history.update(apply_event(history, value, self.max_len, self.half_life_ms).to_json())
            return
        self.requests.inc()
        k = len(value.candidates) if value.k is None else min(value.k, len(value.candidates))
        # (request_id, user_id, [item]*<=L, [event]*<=L, [candidate]*C, k, history_len, ts)
        yield Row(value.request_id, value.user_id, history.items, history.events, list(value.candidates),
                  k, history.count, value.ts)


class AssembleRankedList:
    """Scored row -> (user_id, ranked-list JSON), the Kafka record of `ranked-lists`."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def __call__(self, row: Row) -> Row:
        scores = row["scores"]
        record = ranked_list(
            request_id=row["request_id"], user_id=row["user_id"], candidates=list(row["candidates"]),
            scores=None if scores is None else list(scores), k=row["k"], model_version=self.model_version,
            history_len=row["history_len"], ts=row["ts"], emitted_at=int(time.time() * 1000))
        return Row(row["user_id"], to_json(record))
