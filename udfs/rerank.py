"""The request path in one keyed operator (thread mode): parse, fold events, wait for the watermark,
score with ONNX Runtime, emit the ranked list.

One Python operator instead of parse -> keyed state -> pandas UDF -> assemble: every Python
operator boundary is a JVM <-> Python crossing per record, and the pandas UDF also a Beam round
trip plus up to `bundle.time` of waiting (bench/results/latest.json has the profile).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Iterable

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedBroadcastProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from udfs.content import PresentSettings, present
from udfs.control import ModelRef, Serving, apply_announcement
from udfs.embeddings import EmbeddingTable
from udfs.errors import InvalidRecord
from udfs.faults import Faults
from udfs.functions import DEAD_LETTERS, DeadLetters, epoch_ms, state_ttl
from udfs.history import UserHistory, append_event
from udfs.ranking import ranked_list, to_json
from udfs.records import FORGET_EVENT, Limits, RankRequest, Reason, UserEvent, parse_record
from udfs.release import PendingRequest, ready, split_due
from udfs.trending import Blend, BlendParams, TrendTable, parse_trend_record
from udfs.serving import LoadedSet, ModelSwitch, ScoringTimeout, TimedScorer, finite_scores, in_python_thread, restore_order

log = logging.getLogger(__name__)

# Broadcast state: the serving sets accepted from `model-updates`, oldest first, as JSON. Part of
# every checkpoint, so a restarted job serves what it served (`udfs.serving.restore_order`).
MODEL_STATE = MapStateDescriptor("model-updates", Types.STRING(), Types.STRING())
HISTORY_KEY = "serving"
# Broadcast state: the latest `item-embeddings` value per item_id (JSON), so a restored job has the
# vectors it had without re-reading the compacted topic from the start (~2.2 KB per item).
EMBEDDING_STATE = MapStateDescriptor("item-embeddings", Types.STRING(), Types.STRING())
# Broadcast state: the latest `item-trends` value per key (item id or category:<name>), JSON (~120 B each).
TREND_STATE = MapStateDescriptor("item-trends", Types.STRING(), Types.STRING())
# A user with no history has no blend file to tune: the trend alone ranks (weight 1).
COLD_BLEND = BlendParams()
# Accepted serving sets kept; a restart falls back through them (and then to --model-dir) when the
# newest no longer loads.
MAX_HISTORY = 16


def subtask_index(runtime_context: RuntimeContext) -> int:
    """This instance's subtask index.

    PyFlink 2.3's thread-mode context calls RuntimeContext.getIndexOfThisSubtask(), which Flink 2
    moved to getTaskInfo(); process mode still has the PyFlink method.
    """
    java = getattr(runtime_context, "_runtime_context", None)
    if java is not None and hasattr(java, "getTaskInfo"):
        return int(java.getTaskInfo().getIndexOfThisSubtask())
    return runtime_context.get_index_of_this_subtask()


class RerankFunction(KeyedBroadcastProcessFunction):
    """Keyed by user id. Input 1: (topic, partition, offset, record timestamp, value bytes, key bytes)
    of user-events and rank-requests; input 2 (broadcast): the same for `model-updates`,
    `item-embeddings` (the latest language-model vector per item, udfs/embeddings.py) and
    `item-trends` (decayed event counts per item, udfs/trending.py).

    Output: (user_id, ranked-list JSON); bad records and refused announcements -> DEAD_LETTERS. A
    request is answered with the user's events logged at or before it (`udfs.release`), by the
    model of the user's A/B arm (`udfs.control`); a model that raises, returns non-finite scores or
    stalls past `scoring_timeout_ms` answers with a flagged fallback list, never drops the request.
    After the model, `udfs.content.present` scores candidates outside the vocabulary from their
    text (content-aware models), blends model and trend (the model's blend.json; a user with no
    history by the trend alone), orders the list (MMR when `diversity_lambda` < 1) and attaches a
    reason to each shown item.
    """

    # Room in the stored window for events that arrive while requests wait for the watermark: a
    # request needs the last max_len events logged before it, and in a replay at full speed more
    # than 16 later events of one user arrived while its request waited (served scores then
    # differed from offline ones with the right history_len). A window of L + 64 at L = 50 is
    # ~1.2 KB of state.
    SLACK = 64

    def __init__(self, events_topic: str, requests_topic: str, limits: Limits, model_dir: str,
                 providers: list[str], threads: int, int8: bool, half_life_ms: int, ttl_ms: int,
                 max_wait_ms: int, scoring_timeout_ms: int, pseudonymize: bool = False,
                 faults: Faults | None = None, embeddings_topic: str = "",
                 presenting: PresentSettings = PresentSettings(), trends_topic: str = "") -> None:
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
        self.scoring_timeout_ms = scoring_timeout_ms
        # The key is the user id's pseudonym (computed in SQL): records take it instead of the raw
        # id, and dead letters lose the detail and payload that would carry raw ids.
        self.pseudonymize = pseudonymize
        self.faults = faults
        self.embeddings_topic = embeddings_topic
        self.presenting = presenting
        self.trends_topic = trends_topic
        self.switch = None

    def open(self, runtime_context: RuntimeContext) -> None:
        from udfs.scoring import OnnxScorer, load_validated  # onnxruntime loads on the worker, never at import

        def load(ref: ModelRef) -> OnnxScorer:
            return load_validated(ref, self.providers, self.threads, self.int8)

        self.subtask = subtask_index(runtime_context)
        self.switch = ModelSwitch(load)
        # --model-dir serves until model-updates says otherwise (the client refused a bad one before submission).
        base = in_python_thread(lambda: OnnxScorer(self.model_dir, self.providers, self.threads, self.int8))
        self.base = Serving.single(ModelRef(base.version, self.model_dir))
        base.ref = self.base.models[base.version]
        self.switch.current = LoadedSet(self.base, {base.version: base})
        self.synced = False  # broadcast state is read on the first record (not reachable in open())
        self.timed = TimedScorer(self.scoring_timeout_ms / 1000) if self.scoring_timeout_ms else None
        self.max_len = base.artifact.max_len
        self.history = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("history", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        # Requests waiting for the watermark: a list of PendingRequest (rarely more than one).
        self.pending = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        self.group = group = runtime_context.get_metrics_group().add_group("rerank")
        self.events = group.counter("events")
        self.n_events = 0
        self.requests = group.counter("requests")
        self.dead = DeadLetters(group)
        self.ranked = group.counter("ranked_lists")
        self.fallbacks = group.counter("fallback_lists")
        self.failures = group.counter("scoring_failures")
        self.timeouts = group.counter("scoring_timeouts")
        self.capped = group.counter("released_by_cap")
        self.swaps = group.counter("model_swaps")
        self.forgotten = group.counter("forgotten_users")
        self.refusals = group.counter("model_refusals")
        self.embedding_updates = group.counter("item_embedding_updates")
        self.content_scored = group.counter("content_scored_items")
        # encoder name -> the latest vector per item; more than one only while encoders change over
        self.tables: dict[str, EmbeddingTable] = {}
        group.gauge("item_embeddings", lambda: sum(len(t) for t in self.tables.values()))
        self.trend_updates = group.counter("item_trend_updates")
        self.blended = group.counter("blended_lists")
        self.trends = TrendTable()
        group.gauge("item_trends", lambda: len(self.trends))
        self.last_load_ms = 0
        group.gauge("model_load_ms", lambda: self.last_load_ms)
        # PyFlink has no Python histogram; rate(scoring_us) / rate(ranked_lists) is the mean cost.
        self.scoring_us = group.counter("scoring_us")
        self.per_arm: dict[tuple[str, str], tuple] = {}
        self.loaded_gauges: set[str] = set()
        self._label_versions()

    def _label_versions(self) -> None:
        """A gauge per version ever served, 1 while it takes traffic: {model_version="sasrec_v3"} (the reporter maps "/" to "_")."""
        for model in self.switch.current.scorers:
            if model not in self.loaded_gauges:
                self.loaded_gauges.add(model)
                self.group.add_group("model_version", model).gauge(
                    "model_loaded", lambda m=model: int(m in self.switch.current.scorers))

    def _arm_counters(self, arm: str, model: str) -> tuple:
        counters = self.per_arm.get((arm, model))
        if counters is None:
            g = self.group.add_group("arm", arm).add_group("model_version", model)
            counters = self.per_arm[(arm, model)] = (g.counter("ranked_lists"), g.counter("fallback_lists"))
        return counters

    # -- control plane ---------------------------------------------------------------------------

    def _sync(self, ctx) -> None:
        """After a (re)start: serve the newest serving set recorded in the broadcast state that loads."""
        self.synced = True
        if self.embeddings_topic:
            restored = 0
            for item_id, value in ctx.get_broadcast_state(EMBEDDING_STATE).items():
                self._table_update(value)
                restored += 1
            if restored:
                log.info("restored %d item embeddings from broadcast state", restored)
        if self.trends_topic:
            for _, value in ctx.get_broadcast_state(TREND_STATE).items():
                self.trends.update(parse_trend_record(value))
            if len(self.trends):
                log.info("restored %d item trends from broadcast state", len(self.trends))
        text = ctx.get_broadcast_state(MODEL_STATE).get(HISTORY_KEY)
        if not text:
            return
        history = [Serving.from_json(t) for t in json.loads(text)]
        try:
            loaded, skipped = restore_order(history, self.switch.load_now)
        except RuntimeError as exc:
            log.error("no recorded model serving set loads; serving %s: %s", self.model_dir, exc)
            return
        for reason in skipped:
            log.warning("restored serving set skipped: %s", reason)
        log.info("restored model serving set: %s", self._describe(loaded.serving))
        self._label_versions()

    @staticmethod
    def _describe(serving: Serving) -> str:
        return ", ".join(f"{a.name}={a.model}:{a.share:g}" for a in serving.arms)

    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context) -> list | None:
        if not self.synced:
            self._sync(ctx)
        topic, partition, offset, payload = value[0], value[1], value[2], value[4]
        if topic == self.embeddings_topic:
            return self._on_embedding(ctx, topic, partition, offset, payload, value[5])
        if topic == self.trends_topic:
            return self._on_trend(ctx, topic, partition, offset, payload, value[5])
        state = ctx.get_broadcast_state(MODEL_STATE)
        text = state.get(HISTORY_KEY)
        history = json.loads(text) if text else []
        desired = Serving.from_json(history[-1]) if history else self.base
        try:
            serving = apply_announcement(desired, payload)
        except InvalidRecord as exc:
            self.refusals.inc()
            log.error("model-updates %s/%s@%s refused: %s", topic, partition, offset, exc)
            # Every instance sees the same record and refuses it the same way: one dead letter is enough.
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))] if self.subtask == 0 else None
        history = (history + [serving.to_json()])[-MAX_HISTORY:]
        state.put(HISTORY_KEY, json.dumps(history))
        log.info("model-updates %s/%s@%s: loading %s", topic, partition, offset, self._describe(serving))
        self.switch.request(serving, (topic, partition, offset, payload))
        return self._applied()

    def _table_update(self, value: str | bytes) -> str:
        """Apply one item-embeddings value to the table of its encoder; ValueError if it is not one."""
        record = json.loads(value)
        if not isinstance(record, dict) or not isinstance(record.get("model"), str) \
                or not isinstance(record.get("item_id"), str) or not isinstance(record.get("dim"), int):
            raise ValueError("not an item-embeddings record (needs item_id, model, dim, embedding)")
        table = self.tables.get(record["model"])
        if table is None:
            table = self.tables[record["model"]] = EmbeddingTable(record["model"], record["dim"])
        return table.update(record)

    def _on_embedding(self, ctx, topic: str, partition: int, offset: int, payload: bytes | None,
                      key: bytes | None) -> list | None:
        """One `item-embeddings` record: the item's new vector, or a tombstone (null value) that forgets it."""
        state = ctx.get_broadcast_state(EMBEDDING_STATE)
        if payload is None:
            item_id = key.decode("utf-8", "replace") if key else ""
            for table in self.tables.values():
                table.delete(item_id)
            state.remove(item_id)
            self.embedding_updates.inc()
            return None
        try:
            item_id = self._table_update(payload)
        except (ValueError, TypeError, KeyError) as exc:  # json.JSONDecodeError is a ValueError
            exc = InvalidRecord("apply item-embedding", str(exc), Reason.BAD_EMBEDDING.value)
            # Every instance sees the same record and refuses it the same way: one dead letter is enough.
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))] if self.subtask == 0 else None
        state.put(item_id, payload.decode("utf-8"))
        self.embedding_updates.inc()
        return None

    def _on_trend(self, ctx, topic: str, partition: int, offset: int, payload: bytes | None,
                  key: bytes | None) -> list | None:
        """One `item-trends` record: the item's (or category's) latest count, or a tombstone."""
        state = ctx.get_broadcast_state(TREND_STATE)
        if payload is None:
            name = key.decode("utf-8", "replace") if key else ""
            self.trends.delete(name)
            state.remove(name)
            self.trend_updates.inc()
            return None
        try:
            record = parse_trend_record(payload, key)
        except InvalidRecord as exc:
            # Every instance sees the same record and refuses it the same way: one dead letter is enough.
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))] if self.subtask == 0 else None
        self.trends.update(record)
        state.put(key.decode("utf-8") if key else record.name, payload.decode("utf-8"))
        self.trend_updates.inc()
        return None

    def _blend(self, scorer, history_len: int, last_ts: int, request: RankRequest) -> Blend | None:
        """The request's trend input: with trends at hand, by the model's blend.json; a user with
        no history by the trend alone; None (the model's scores as they are) otherwise.

        Times are the records' own `ts` (trends count events at their ts, models/temporal.py tunes
        on them): the gap is request ts - the user's newest event ts, 0 if that is not earlier.
        """
        if not len(self.trends):
            return None
        params = scorer.blend if history_len else COLD_BLEND
        if params is None:
            return None
        gap = max(0, request.ts - last_ts) if last_ts else 0
        return Blend(self.trends.values_at(request.candidates, request.ts), history_len, gap, params)

    def _applied(self) -> list | None:
        """Swap in finished loads; refused ones become dead letters. Cheap when nothing finished."""
        outcomes = self.switch.poll()
        if not outcomes:
            return None
        out = []
        for o in outcomes:
            topic, partition, offset, payload = o.tag
            self.last_load_ms = int(o.load_ms)
            if o.error is None:
                self.swaps.inc()
                log.info("now serving %s (loaded in %.0f ms)", self._describe(o.serving), o.load_ms)
                continue
            self.refusals.inc()
            log.error("model-updates %s/%s@%s refused, still serving %s: %s", topic, partition, offset,
                      self._describe(self.switch.current.serving), o.error)
            exc = InvalidRecord("load model-update", f"subtask {self.subtask}: {o.error}", Reason.MODEL_REFUSED.value)
            out.append((DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload)))
        self._label_versions()
        return out or None

    # -- data plane ------------------------------------------------------------------------------

    def process_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext) -> list | None:
        # A list or None, not a generator: most records are events, which emit nothing.
        if not self.synced:
            self._sync(ctx)
        out = self._applied()
        topic, partition, offset, logged, payload, key = value[0], value[1], value[2], value[3], value[4], value[5]
        try:
            record = parse_record(topic, payload, key, self.events_topic, self.requests_topic, self.limits)
        except InvalidRecord as exc:
            return (out or []) + [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload,
                                                                  redact=self.pseudonymize))]
        if self.pseudonymize:
            key = ctx.get_current_key()
            # The key type is ROW<STRING> (jobs/kafka_tables.keyed_by): a Row, or its one field.
            record = dataclasses.replace(record, user_id=key if isinstance(key, str) else str(key[0]))
        log_ts = epoch_ms(logged)
        if isinstance(record, UserEvent):
            event = record
            if event.event == FORGET_EVENT:
                return (out or []) + self._forget(ctx, event)
            self.history.update(append_event(self.history.value(), event, log_ts, self.max_len + self.SLACK,
                                             self.half_life_ms, self.limits.event_types))
            self.n_events += 1
            return out
        request = record
        if self.faults is not None:
            self.faults.on_request(request.request_id)
        self.requests.inc()
        if self.n_events:  # counted locally: a metric call per event costs more than the event itself
            self.events.inc(self.n_events)
            self.n_events = 0
        timers = ctx.timer_service()
        if ready(log_ts, timers.current_watermark()):  # a backlog: the watermark is already past it
            return (out or []) + [self._answer(UserHistory.from_bytes(self.history.value(), self.limits.event_types), log_ts, request)]
        pending = self._pending()
        due = timers.current_processing_time() + self.max_wait_ms
        pending.append(PendingRequest(log_ts, due, request))
        self.pending.update(pending)
        timers.register_event_time_timer(log_ts)
        timers.register_processing_time_timer(due)
        return out

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext) -> Iterable[Row]:
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
        history = UserHistory.from_bytes(self.history.value(), self.limits.event_types)
        for p in answer:
            if p.due_ms <= now_ms and not ready(p.log_ts, timers.current_watermark()):
                self.capped.inc()
            else:  # its cap timer has nothing left to do
                timers.delete_processing_time_timer(p.due_ms)
            yield self._answer(history, p.log_ts, p.request)

    def _forget(self, ctx, event: UserEvent) -> list:
        """Clear the user's state now. Requests still waiting were logged before the forget record
        (same partition, in order): they are answered first, from the history they were sent against."""
        pending = self._pending()
        history = UserHistory.from_bytes(self.history.value(), self.limits.event_types)
        answers = [self._answer(history, p.log_ts, p.request) for p in pending]
        timers = ctx.timer_service()
        for p in pending:
            timers.delete_processing_time_timer(p.due_ms)
            timers.delete_event_time_timer(p.log_ts)
        self.history.clear()
        self.pending.clear()
        self.forgotten.inc()
        return answers

    def _pending(self) -> list[PendingRequest]:
        return self.pending.value() or []

    def _score(self, scorer, items: list[str], events: list[str], request: RankRequest
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(scores (C,), is_oov (C,), user_state (D,) or None) of one request; raises on any model fault."""
        extra: list = []

        def score() -> np.ndarray:
            scores, is_oov, state = scorer.score_request(items, events, request.candidates)
            extra.append((is_oov, state))
            return scores

        if self.faults is not None:
            score = self.faults.wrap_model(request.request_id, score)
        scores = self.timed.call(score) if self.timed is not None else score()
        is_oov, state = extra[-1]
        return finite_scores(scores, len(request.candidates)), is_oov, state

    def _table_for(self, scorer) -> EmbeddingTable | None:
        """The vectors this scorer can use: its own encoder's for a content-aware model; for an
        ID-only model (reasons and MMR only) the table of the only encoder seen."""
        if scorer.projection is not None:
            return self.tables.get(scorer.projection.encoder)
        return next(iter(self.tables.values())) if len(self.tables) == 1 else None

    def _answer(self, history: UserHistory, log_ts: int, request: RankRequest) -> Row:
        seen = history.as_of(log_ts, self.max_len)
        loaded = self.switch.current  # one read: the whole request sees one serving set
        arm = loaded.serving.assign(request.user_id)
        scorer = loaded.scorers[arm.model]
        start = time.perf_counter()
        shown = None
        try:
            scores, is_oov, state = self._score(scorer, seen.items, seen.events, request)
            shown = present(request.candidates, scores, is_oov, state, scorer.projection, self._table_for(scorer),
                            seen.items, request.k, self.presenting, self._blend(scorer, seen.count, history.last_ts, request))
            scores = shown.scores
        except ScoringTimeout as exc:
            log.error("scoring request %s with %s: %s; emitting a fallback list", request.request_id, arm.model, exc)
            self.timeouts.inc()
            self.failures.inc()
            scores = None
        except Exception:  # noqa: BLE001 - any model/runtime fault: log, count, serve a fallback list
            log.exception("scoring request %s with %s failed; emitting a fallback list", request.request_id,
                          arm.model)
            self.failures.inc()
            scores = None
        self.scoring_us.inc(int((time.perf_counter() - start) * 1e6))
        if shown is None:
            scores = None  # a model fault, or present() failing on what the model returned
        else:
            if shown.by_content.any():
                self.content_scored.inc(int(shown.by_content.sum()))
            if shown.trend_weight is not None:
                self.blended.inc()
        record = ranked_list(
            request_id=request.request_id, user_id=request.user_id, candidates=request.candidates,
            scores=scores, k=request.k, model_version=arm.model, history_len=seen.count,
            ts=request.ts, emitted_at=int(time.time() * 1000), arm=arm.name,
            order=None if shown is None else shown.order, reasons=None if shown is None else shown.reasons,
            trend_weight=None if shown is None else shown.trend_weight)
        self.ranked.inc()
        ranked, fallbacks = self._arm_counters(arm.name, arm.model)
        ranked.inc()
        if record["fallback"]:
            self.fallbacks.inc()
            fallbacks.inc()
        return Row(request.user_id, to_json(record))
