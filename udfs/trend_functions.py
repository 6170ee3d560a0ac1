"""The trending job's Flink functions: thin wrappers around udfs/trending.py (thread mode).

    ItemTrends (keyed by item_id): a user-events record -> parse (bad -> DEAD_LETTERS; `forget`
        counts nothing) -> the item's DecayedCount (ValueState, TTL) -> at most one item-trends
        record per emit interval of event time (an event-time timer); with categories, each counted
        event also goes to CATEGORY_COUNTS once per category of the item
    CatalogItemTrends: ItemTrends connected to item-catalog (input 2): the item's categories (ValueState)
    CategoryTrends (keyed by category): CATEGORY_COUNTS rows -> scope 'category' records, same throttle

Two clocks, on purpose: a count is decayed on the events' own `ts` (what models/temporal.py counts
and what the ranking job's blend reads), the throttle runs on the watermark, i.e. the Kafka record
timestamps. A record's `at` is the newest event `ts` it counts.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Mapping

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedCoProcessFunction, KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.embeddings import parse_catalog_item, tombstone_item
from udfs.errors import InvalidRecord
from udfs.functions import DEAD_LETTERS, DeadLetters, epoch_ms, state_ttl
from udfs.records import FORGET_EVENT, Limits, Reason, check_key, parse_event
from udfs.trending import (SCOPE_CATEGORY, SCOPE_ITEM, DecayedCount, TrendRecord, emit_time, trend_categories,
                           trend_key, trend_record)

log = logging.getLogger(__name__)
METRIC_GROUP = "trending"
# One counted event for one of its item's categories: weight at the event's ts; `logged` is its
# record timestamp, the clock of the category's throttle.
CATEGORY_COUNT = Types.ROW_NAMED(["category", "weight", "ts", "logged"],
                                 [Types.STRING(), Types.DOUBLE(), Types.LONG(), Types.LONG()])
CATEGORY_COUNTS = OutputTag("category-counts", CATEGORY_COUNT)


def key_name(key) -> str:
    """The current key as a str: keyed in the JVM (jobs/kafka_tables.keyed_by) it is ROW<STRING>."""
    return key if isinstance(key, str) else str(key[0])


class _Throttled:
    """What the item and category operators share: one DecayedCount per key and its pending emit.

    State (TTL): (value, at_ms, events, due_ms); due_ms 0 = no record scheduled. The first event
    after a record registers one event-time timer at `emit_time(...)`; events until it fires only
    update the count, so a key yields at most one record per `interval_ms` of event time.
    """

    scope = SCOPE_ITEM

    def __init__(self, half_life_ms: int, interval_ms: int, ttl_ms: int) -> None:
        self.half_life_ms = half_life_ms
        self.interval_ms = interval_ms
        self.ttl_ms = ttl_ms

    def _open_count(self, runtime_context: RuntimeContext):
        self.count = runtime_context.get_state(
            state_ttl(ValueStateDescriptor(f"{self.scope}-trend", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.records = group.counter(f"{self.scope}_trend_records")
        return group

    def _add(self, ctx, weight: float, ts_ms: int, logged_ms: int) -> None:
        value, at_ms, events, due = self.count.value() or (0.0, 0, 0, 0)
        count = DecayedCount(value, at_ms).add(weight, ts_ms, self.half_life_ms)
        if not due:
            timers = ctx.timer_service()
            due = emit_time(logged_ms, timers.current_watermark(), self.interval_ms)
            timers.register_event_time_timer(due)
        self.count.update((count.value, count.at_ms, events + 1, due))

    def on_timer(self, timestamp: int, ctx) -> Iterable[Row]:
        state = self.count.value()
        if state is None:  # expired (TTL) while the timer waited
            return
        value, at_ms, events, _ = state
        self.count.update((value, at_ms, events, 0))
        name = key_name(ctx.get_current_key())
        record = TrendRecord(self.scope, name, value, at_ms, self.half_life_ms, events,
                             emitted_at=int(time.time() * 1000))
        self.records.inc()
        # (trend_key, item-trends JSON)
        yield Row(trend_key(self.scope, name), trend_record(record))


class ItemTrends(_Throttled, KeyedProcessFunction):
    """Keyed by item_id (extracted in SQL). Input: (topic, partition, offset, record timestamp, value
    bytes, key bytes) of user-events. Output: (item_id, item-trends JSON); bad records ->
    DEAD_LETTERS; with `categories`, (category, weight, ts, logged) -> CATEGORY_COUNTS."""

    def __init__(self, limits: Limits, weights: Mapping[str, float], half_life_ms: int, interval_ms: int,
                 ttl_ms: int, categories: bool = False) -> None:
        super().__init__(half_life_ms, interval_ms, ttl_ms)
        self.limits = limits
        self.weights = dict(weights)
        self.with_categories = categories

    def open(self, runtime_context: RuntimeContext) -> None:
        group = self._open_count(runtime_context)
        self.dead = DeadLetters(group)
        self.events = group.counter("counted_events")
        self.n_events = 0
        if self.with_categories:
            self.categories = runtime_context.get_state(
                state_ttl(ValueStateDescriptor("item-categories", Types.PICKLED_BYTE_ARRAY()), self.ttl_ms))
            self.catalog_updates = group.counter("catalog_updates")

    def process_element(self, value: Row, ctx) -> list | None:
        # A list or None, not a generator: most events emit nothing (records come from the timer).
        topic, partition, offset, logged, payload, key = value[0], value[1], value[2], value[3], value[4], value[5]
        try:
            event = parse_event(payload, max_id_bytes=self.limits.max_id_bytes,
                                max_value_bytes=self.limits.max_value_bytes, event_types=self.limits.event_types)
            check_key(key, event)
            if event.event != FORGET_EVENT and event.item_id != key_name(ctx.get_current_key()):
                # SQL's JSON_VALUE and the parser disagree on the item: never count it under the wrong key.
                raise InvalidRecord("key by item", f"SQL key {key_name(ctx.get_current_key())!r:.80} != "
                                                   f"field 'item_id' {event.item_id!r:.80}", Reason.KEY_MISMATCH)
        except InvalidRecord as exc:
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))]
        weight = self.weights.get(event.event, 0.0)
        if event.event == FORGET_EVENT or weight == 0.0:
            return None  # a user's forget record holds nothing of the user here; weight 0: not counted
        logged_ms = epoch_ms(logged)
        self._add(ctx, weight, event.ts, logged_ms)
        self.n_events += 1
        if self.n_events >= 1000:  # counted locally: a metric call per event costs more than the event
            self.events.inc(self.n_events)
            self.n_events = 0
        if not self.with_categories:
            return None
        return [(CATEGORY_COUNTS, Row(c, weight, event.ts, logged_ms)) for c in self.categories.value() or ()]

    def on_timer(self, timestamp: int, ctx) -> Iterable[Row]:
        if self.n_events:
            self.events.inc(self.n_events)
            self.n_events = 0
        yield from super().on_timer(timestamp, ctx)


class CatalogItemTrends(ItemTrends, KeyedCoProcessFunction):
    """ItemTrends with input 2: item-catalog records (same raw row) keyed by item_id, which set the
    item's categories. An event counts for the categories its item has when it is processed; a
    tombstone (or a record without categories) clears them. Bad catalog records -> DEAD_LETTERS."""

    def __init__(self, limits: Limits, weights: Mapping[str, float], half_life_ms: int, interval_ms: int,
                 ttl_ms: int) -> None:
        super().__init__(limits, weights, half_life_ms, interval_ms, ttl_ms, categories=True)

    def process_element1(self, value: Row, ctx) -> list | None:
        return self.process_element(value, ctx)

    def process_element2(self, value: Row, ctx) -> list | None:
        topic, partition, offset, payload, key = value[0], value[1], value[2], value[4], value[5]
        if tombstone_item(payload, key, max_id_bytes=self.limits.max_id_bytes) is not None:
            self.categories.clear()
            self.catalog_updates.inc()
            return None
        try:
            item = parse_catalog_item(payload, key, max_id_bytes=self.limits.max_id_bytes,
                                      max_value_bytes=self.limits.max_value_bytes)
        except InvalidRecord as exc:
            return [(DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload))]
        categories = trend_categories(item.categories, self.limits.max_id_bytes)
        if categories:
            self.categories.update(categories)
        else:
            self.categories.clear()
        self.catalog_updates.inc()
        return None


class CategoryTrends(_Throttled, KeyedProcessFunction):
    """Keyed by category: CATEGORY_COUNT rows -> ('category:<name>', item-trends JSON of scope 'category')."""

    scope = SCOPE_CATEGORY

    def open(self, runtime_context: RuntimeContext) -> None:
        self._open_count(runtime_context)

    def process_element(self, value: Row, ctx) -> None:
        self._add(ctx, value[1], value[2], value[3])
        return None
