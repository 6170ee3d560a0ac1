"""The request path in one keyed operator (thread mode): parse, fold events, wait for the watermark,
score with ONNX Runtime, emit the ranked list.

One Python operator instead of parse -> keyed state -> pandas UDF -> assemble: every Python
operator boundary is a JVM <-> Python crossing per record, and the pandas UDF also a Beam round
trip plus up to `bundle.time` of waiting (bench/results/latest.json has the profile).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, TypeVar

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.errors import InvalidRecord
from udfs.functions import DEAD_LETTERS, DeadLetters, epoch_ms, state_ttl
from udfs.history import UserHistory, append_event
from udfs.ranking import ranked_list, to_json
from udfs.records import Limits, RankRequest, UserEvent, parse_record
from udfs.release import PendingRequest, ready, split_due

log = logging.getLogger(__name__)
T = TypeVar("T")


def in_python_thread(build: Callable[[], T]) -> T:
    """Run `build` on a thread that Python itself started, and return its result.

    Thread mode runs this function on a JVM thread whose Python thread state is not registered
    with the PyGILState API. pybind11 modules (onnxruntime) call PyGILState_Ensure when they are
    first imported and set up; on such a thread that waits for the GIL the thread already holds,
    for ever. A `threading.Thread` has a registered state, and join() releases the GIL meanwhile.
    """
    result: list = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(build())
        except BaseException as exc:  # re-raised on the calling thread below
            error.append(exc)

    worker = threading.Thread(target=target, name="rerank-model-load")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


class RerankFunction(KeyedProcessFunction):
    """Keyed by user id. Input: (topic, partition, offset, record timestamp, value bytes, key bytes).

    Output: (user_id, ranked-list JSON); bad records -> DEAD_LETTERS. A request is answered with
    the user's events logged at or before it (`udfs.release`); a scoring failure answers with a
    flagged fallback list, never drops the request.
    """

    # Room in the stored window for events that arrive while requests wait for the watermark: a
    # request needs the last max_len events logged before it, and in a replay at full speed more
    # than 16 later events of one user arrived while its request waited (served scores then
    # differed from offline ones with the right history_len). A window of L + 64 at L = 50 is
    # ~1.2 KB of state.
    SLACK = 64

    def __init__(self, events_topic: str, requests_topic: str, limits: Limits, model_dir: str,
                 providers: list[str], threads: int, int8: bool, half_life_ms: int, ttl_ms: int,
                 max_wait_ms: int) -> None:
        self.events_topic = events_topic
        self.requests_topic = requests_topic
        self.limits = limits
        self.model_dir = model_dir
        self.providers = providers
        self.threads = threads
        self.int8 = int8
        self.half_life_ms = half_life_ms
        self.ttl_ms = ttl_ms
        self.max_wait_ms = max_wait_ms
        self.scorer = None

    def open(self, runtime_context: RuntimeContext) -> None:
        from udfs.scoring import OnnxScorer  # onnxruntime loads on the worker, never at import

        self.scorer = in_python_thread(lambda: OnnxScorer(self.model_dir, self.providers, self.threads, self.int8))
        self.max_len = self.scorer.artifact.max_len
        self.history = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("history", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        # Requests waiting for the watermark: a list of PendingRequest (rarely more than one).
        self.pending = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        group = runtime_context.get_metrics_group().add_group("rerank")
        self.events = group.counter("events")
        self.n_events = 0
        self.requests = group.counter("requests")
        self.dead = DeadLetters(group)
        self.ranked = group.counter("ranked_lists")
        self.fallbacks = group.counter("fallback_lists")
        self.failures = group.counter("scoring_failures")
        self.capped = group.counter("released_by_cap")
        # PyFlink has no Python histogram; rate(scoring_us) / rate(ranked_lists) is the mean cost.
        self.scoring_us = group.counter("scoring_us")
        group.add_group("model_version", self.scorer.version).gauge("model_loaded", lambda: 1)

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> list | None:
        # A list or None, not a generator: most records are events, which emit nothing.
        topic, partition, offset, logged, payload, key = value[0], value[1], value[2], value[3], value[4], value[5]
        try:
            record = parse_record(topic, payload, key, self.events_topic, self.requests_topic, self.limits)
        except InvalidRecord as exc:
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))]
        log_ts = epoch_ms(logged)
        if isinstance(record, UserEvent):
            event = record
            self.history.update(append_event(self.history.value(), event, log_ts, self.max_len + self.SLACK,
                                             self.half_life_ms))
            self.n_events += 1
            return None
        request = record
        self.requests.inc()
        if self.n_events:  # counted locally: a metric call per event costs more than the event itself
            self.events.inc(self.n_events)
            self.n_events = 0
        timers = ctx.timer_service()
        if ready(log_ts, timers.current_watermark()):  # a backlog: the watermark is already past it
            return [self._answer(UserHistory.from_bytes(self.history.value()), log_ts, request)]
        pending = self._pending()
        due = timers.current_processing_time() + self.max_wait_ms
        pending.append(PendingRequest(log_ts, due, request))
        self.pending.update(pending)
        timers.register_event_time_timer(log_ts)
        timers.register_processing_time_timer(due)
        return None

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        pending = self._pending()
        if not pending:
            return
        timers = ctx.timer_service()
        now_ms = timers.current_processing_time()
        answer, keep = split_due(pending, timers.current_watermark(), now_ms)
        if not answer:
            return
        if keep:
            self.pending.update(keep)
        else:
            self.pending.clear()
        history = UserHistory.from_bytes(self.history.value())
        for p in answer:
            if p.due_ms <= now_ms and not ready(p.log_ts, timers.current_watermark()):
                self.capped.inc()
            else:  # its cap timer has nothing left to do
                timers.delete_processing_time_timer(p.due_ms)
            yield self._answer(history, p.log_ts, p.request)

    def _pending(self) -> list[PendingRequest]:
        return self.pending.value() or []

    def _answer(self, history: UserHistory, log_ts: int, request: RankRequest) -> Row:
        seen = history.as_of(log_ts, self.max_len)
        start = time.perf_counter()
        try:
            scores = self.scorer.score_one(seen.items, seen.events, request.candidates)
        except Exception:  # noqa: BLE001 - any model/runtime fault: log, count, serve a fallback list
            log.exception("scoring request %s failed; emitting a fallback list", request.request_id)
            self.failures.inc()
            scores = None
        self.scoring_us.inc(int((time.perf_counter() - start) * 1e6))
        record = ranked_list(
            request_id=request.request_id, user_id=request.user_id, candidates=request.candidates,
            scores=scores, k=request.k, model_version=self.scorer.version, history_len=seen.count,
            ts=request.ts, emitted_at=int(time.time() * 1000))
        self.ranked.inc()
        if record["fallback"]:
            self.fallbacks.inc()
        return Row(request.user_id, to_json(record))
