"""Trending: decayed event counts per item (and per category), the `item-trends` contract, and the
blend of model and trend that serves cold and returning users.

One place for what the stream side (jobs/trending_job.py), the scorer (udfs/rerank.py) and the
offline temporal protocol (models/temporal.py) must agree on:

- ``DecayedCount``: an exponentially decayed count, ``sum(w * 0.5 ** ((t - ts) / half_life))``,
  kept as (value, as-of time); events out of order are added at their own age;
- what the trending job counts (``parse_event_weights``), under which category names
  (``trend_categories``) and when a key's next record is due (``emit_time``);
- the `item-trends` record (``trend_record`` / ``parse_trend_record``): keyed by ``trend_key``
  (the item id, or ``category:<name>``), so the topic can be compacted to the latest value;
- ``TrendTable``: the latest record per item on a scoring instance, read as values decayed to a
  request's time;
- ``BlendParams`` and ``blend_batch``: the served score ``(1 - w) * z(model) + w * z(log1p(trend))``
  over one request's candidates, with the trend's weight
  ``w = sigmoid(a + b * log1p(history_len) + c * log1p(gap_days))`` learned on validation data
  (models/temporal.py writes ``blend.json`` beside the model). A user with no history gets
  ``w = 1``: the model has nothing to go on.

Pure Python + numpy; no Flink.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from udfs.errors import InvalidRecord
from udfs.records import (DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_VALUE_BYTES, MAX_TS_MS, MIN_TS_MS, Reason, _decode,
                           _field, _id, check_id)

BLEND_FILE = "blend.json"  # beside model.onnx in a model directory
DAY_MS = 86_400_000
DEFAULT_HALF_LIFE_MS = DAY_MS
SCOPE_ITEM = "item"
SCOPE_CATEGORY = "category"
CATEGORY_PREFIX = "category:"
TREND_STEP = "apply item-trend"


def decay(elapsed_ms: np.ndarray | float, half_life_ms: float) -> np.ndarray | float:
    """0.5 ** (elapsed / half_life); elapsed < 0 (a value from the future) is not grown past 1."""
    return np.power(0.5, np.maximum(elapsed_ms, 0) / float(half_life_ms))


@dataclass(frozen=True)
class DecayedCount:
    """A decayed count as of `at_ms`: immutable, so keyed state stores it as two numbers."""

    value: float = 0.0
    at_ms: int = 0

    def add(self, weight: float, ts_ms: int, half_life_ms: int) -> "DecayedCount":
        """Count an event of `weight` at `ts_ms`. A late event (before `at_ms`) adds its weight at
        its age; a newer one moves the count forward to `ts_ms` first."""
        if self.value == 0.0 and self.at_ms == 0:
            return DecayedCount(float(weight), int(ts_ms))
        if ts_ms >= self.at_ms:
            return DecayedCount(self.value * float(decay(ts_ms - self.at_ms, half_life_ms)) + weight, int(ts_ms))
        return DecayedCount(self.value + weight * float(decay(self.at_ms - ts_ms, half_life_ms)), self.at_ms)

    def value_at(self, ts_ms: int, half_life_ms: int) -> float:
        """The count as seen at `ts_ms` (>= at_ms; earlier reads return the stored value)."""
        return self.value * float(decay(ts_ms - self.at_ms, half_life_ms))


def decayed_counts(item_index: np.ndarray, ts_ms: np.ndarray, n_items: int, at_ms: int, half_life_ms: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Offline twin of a stream of ``DecayedCount.add``: (n_items,) counts as of `at_ms` of events
    (item_index (N,) int, ts_ms (N,)) at or before `at_ms`. models/temporal.py scores popularity
    with this, the trending job computes the same value one event at a time."""
    item_index = np.asarray(item_index, np.int64)
    ts_ms = np.asarray(ts_ms, np.int64)
    keep = ts_ms <= at_ms
    w = decay((at_ms - ts_ms[keep]).astype(np.float64), half_life_ms)
    if weights is not None:
        w = w * np.asarray(weights, np.float64)[keep]
    return np.bincount(item_index[keep], weights=w, minlength=n_items).astype(np.float64)


def parse_event_weights(text: str, event_types: Sequence[str]) -> dict[str, float]:
    """'cart=2,purchase=3' -> the weight of every name in `event_types` in the trending counts.

    An unlisted type weighs 1 ('' = every event weighs 1, as models/temporal.py counts them when it
    tunes the blend); 0 leaves a type out. ValueError on a name outside `event_types` (a typo would
    otherwise weigh 1 silently), a repeated name, or a weight that is not a finite number >= 0.
    """
    weights = dict.fromkeys(event_types, 1.0)
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = (s.strip() for s in part.partition("="))
        if not sep or name not in weights or name in seen:
            raise ValueError(f"event weight {part!r}: expected NAME=WEIGHT once per name, NAME one of "
                             f"{list(event_types)}")
        try:
            weight = float(raw)
        except ValueError:
            raise ValueError(f"event weight {part!r}: {raw!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"event weight {part!r}: must be a finite number >= 0")
        weights[name] = weight
        seen.add(name)
    return weights


def trend_categories(categories: Sequence[str], max_id_bytes: int = DEFAULT_MAX_ID_BYTES) -> tuple[str, ...]:
    """An item's categories as trend names: distinct, in catalog order, and only those a consumer
    accepts as an id (``parse_trend_record`` checks the name like an item id); others are dropped."""
    names = []
    for name in dict.fromkeys(categories):
        try:
            names.append(check_id(name, "category", "trend categories", max_id_bytes))
        except InvalidRecord:
            continue
    return tuple(names)


def emit_time(logged_ms: int, watermark_ms: int, interval_ms: int) -> int:
    """When a key's next trend record is due, for the first event counted since its last record:
    one interval of event time after the event, or after the watermark if the event is late (a
    timer behind the watermark would wait for it to advance, and the throttle is in its clock)."""
    return max(int(logged_ms), int(watermark_ms)) + int(interval_ms)


def trend_key(scope: str, name: str) -> str:
    """The Kafka key (and compaction key) of a trend record: the item id, or 'category:<name>'."""
    return name if scope == SCOPE_ITEM else CATEGORY_PREFIX + name


@dataclass(frozen=True)
class TrendRecord:
    """One `item-trends` value: the decayed count of `name` (an item id or a category) as of `at`."""

    scope: str
    name: str
    score: float
    at: int
    half_life_ms: int
    events: int = 0           # events counted so far (not decayed)
    emitted_at: int | None = None

    def value_at(self, ts_ms: int) -> float:
        return DecayedCount(self.score, self.at).value_at(ts_ms, self.half_life_ms)


def trend_record(record: TrendRecord) -> str:
    """The `item-trends` value (JSON); the Kafka key is ``trend_key(record.scope, record.name)``."""
    body: dict[str, Any] = {"scope": record.scope,
                            ("item_id" if record.scope == SCOPE_ITEM else "category"): record.name,
                            "score": round(float(record.score), 6), "at": int(record.at),
                            "half_life_ms": int(record.half_life_ms), "events": int(record.events)}
    if record.emitted_at is not None:
        body["emitted_at"] = int(record.emitted_at)
    return json.dumps(body, separators=(",", ":"))


def parse_trend_record(raw: bytes | str | None, key: bytes | str | None = None, *,
                       max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
                       max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> TrendRecord:
    """Parse an `item-trends` value; raises InvalidRecord (reason `bad_trend` for what only this
    topic checks, the shared codes of udfs/records.py for the rest). A non-null key must equal
    the record's ``trend_key``."""
    obj = _decode(raw, TREND_STEP, max_value_bytes)
    scope = obj.get("scope", SCOPE_ITEM)
    if scope not in (SCOPE_ITEM, SCOPE_CATEGORY):
        raise InvalidRecord(TREND_STEP, f"scope must be {SCOPE_ITEM!r} or {SCOPE_CATEGORY!r}, got {scope!r}",
                            Reason.BAD_TREND.value)
    name = _id(obj, "item_id" if scope == SCOPE_ITEM else "category", TREND_STEP, max_id_bytes)
    score = _field(obj, "score", (int, float), TREND_STEP)
    if isinstance(score, bool) or not math.isfinite(score) or score < 0:
        raise InvalidRecord(TREND_STEP, f"score must be a finite number >= 0, got {score!r}", Reason.BAD_TREND.value)
    at = _field(obj, "at", int, TREND_STEP)
    if not MIN_TS_MS <= at <= MAX_TS_MS:
        raise InvalidRecord(TREND_STEP, f"field 'at' must be epoch milliseconds, got {at}", Reason.TS_OUT_OF_RANGE)
    half_life = _field(obj, "half_life_ms", int, TREND_STEP)
    if isinstance(half_life, bool) or half_life <= 0:
        raise InvalidRecord(TREND_STEP, f"half_life_ms must be a positive integer, got {half_life!r}",
                            Reason.BAD_TREND.value)
    events = obj.get("events", 0)
    if not isinstance(events, int) or isinstance(events, bool) or events < 0:
        raise InvalidRecord(TREND_STEP, f"events must be an integer >= 0, got {events!r}", Reason.BAD_TREND.value)
    emitted_at = obj.get("emitted_at")
    record = TrendRecord(scope, name, float(score), at, half_life, events,
                         int(emitted_at) if isinstance(emitted_at, int) and not isinstance(emitted_at, bool) else None)
    if key is not None:
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key_text != trend_key(scope, name):
            raise InvalidRecord(TREND_STEP, f"Kafka key {key_text!r} != {trend_key(scope, name)!r}",
                                Reason.KEY_MISMATCH.value)
    return record


@dataclass
class TrendTable:
    """The latest item-scope trend per item on one scoring instance (category records are kept
    apart: nothing on the request path reads them yet)."""

    items: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # id -> (score, at, half-life)
    categories: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def update(self, record: TrendRecord) -> None:
        target = self.items if record.scope == SCOPE_ITEM else self.categories
        target[record.name] = (record.score, record.at, record.half_life_ms)

    def delete(self, key: str) -> None:
        if key.startswith(CATEGORY_PREFIX):
            self.categories.pop(key[len(CATEGORY_PREFIX):], None)
        self.items.pop(key, None)

    def values_at(self, item_ids: Sequence[str], ts_ms: int) -> np.ndarray:
        """(C,) float64: each item's count decayed to `ts_ms`; 0 for an item with no record."""
        rows = [self.items.get(i) for i in item_ids]
        score = np.fromiter((r[0] if r else 0.0 for r in rows), np.float64, len(rows))
        at = np.fromiter((r[1] if r else ts_ms for r in rows), np.float64, len(rows))
        half = np.fromiter((r[2] if r else DAY_MS for r in rows), np.float64, len(rows))
        return score * np.power(0.5, np.maximum(ts_ms - at, 0) / half)


@dataclass(frozen=True)
class BlendParams:
    """The trend's weight ``w = sigmoid(a + b * log1p(history_len) + c * log1p(gap_days))``, and
    the half-life the trend counts were tuned at. Defaults: an even blend for everyone."""

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    half_life_ms: int = DEFAULT_HALF_LIFE_MS
    tuned_on: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"blend parameter {name} must be finite, got {getattr(self, name)!r}")
        if self.half_life_ms <= 0:
            raise ValueError(f"half_life_ms must be > 0, got {self.half_life_ms}")

    def weight(self, history_len: np.ndarray, gap_ms: np.ndarray) -> np.ndarray:
        """(B,) trend weights in (0, 1]; exactly 1 where the user has no history."""
        n = np.asarray(history_len, np.float64)
        gap_days = np.maximum(np.asarray(gap_ms, np.float64), 0) / DAY_MS
        logit = self.a + self.b * np.log1p(n) + self.c * np.log1p(gap_days)
        w = 1.0 / (1.0 + np.exp(-logit))
        return np.where(n <= 0, 1.0, w)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / BLEND_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "BlendParams | None":
        """The model directory's blend.json; None when it has none. ValueError on a bad file."""
        path = Path(model_dir) / BLEND_FILE
        if not path.exists():
            return None
        try:
            body = json.loads(path.read_text())
            return cls(float(body["a"]), float(body["b"]), float(body["c"]), int(body["half_life_ms"]),
                       dict(body.get("tuned_on", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a blend file: {exc}") from exc


def standardize(x: np.ndarray) -> np.ndarray:
    """z-scores along the last axis (candidates); a constant row becomes 0."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return np.divide(x - mean, std, out=np.zeros_like(x), where=std > 1e-12)


def blend_scales(model_scores: np.ndarray, trend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, C) model scores and trend counts -> (z_model, z_trend): the one scale the blend mixes
    them on (z-scores over each request's candidates; the trend as log1p of the count, which is
    heavy-tailed)."""
    return (standardize(np.nan_to_num(model_scores, nan=0.0, posinf=0.0, neginf=0.0)),
            standardize(np.log1p(np.maximum(trend, 0))))


def blend_batch(model_scores: np.ndarray, trend: np.ndarray, history_len: np.ndarray, gap_ms: np.ndarray,
                params: BlendParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, C) model scores and (B, C) trend counts -> (blended (B, C) float64, z_model, w_z_trend).

    The two parts are put on one scale per request (``blend_scales``). The third output, the
    trend's weighted share of each score, is what marks an item "trending" (``trending_mask``).
    """
    w = params.weight(history_len, gap_ms)[:, None]  # (B, 1)
    z_model, z_trend = blend_scales(model_scores, trend)
    trend_part = w * z_trend
    return (1.0 - w) * z_model + trend_part, (1.0 - w) * z_model, trend_part


def blend_scores(model_scores: np.ndarray, trend: np.ndarray, history_len: int, gap_ms: int,
                 params: BlendParams) -> tuple[np.ndarray, np.ndarray]:
    """One request: (C,) model scores and trend counts -> (blended (C,) float32, trending (C,) bool)."""
    blended, model_part, trend_part = blend_batch(np.asarray(model_scores, np.float64)[None, :],
                                                  np.asarray(trend, np.float64)[None, :],
                                                  np.array([history_len]), np.array([gap_ms]), params)
    return blended[0].astype(np.float32), trending_mask(model_part[0], trend_part[0])


def trending_mask(model_part: np.ndarray, trend_part: np.ndarray, floor: float = 0.5) -> np.ndarray:
    """Items whose place comes from the trend: its share of the score is above `floor` (in z units)
    and above the model's share."""
    return (trend_part > floor) & (trend_part > model_part)



@dataclass(frozen=True)
class Blend:
    """One request's trend input to ``udfs.content.present``: trend counts (C,) of its candidates
    at request time, the user's history length and the time since their last event."""

    trend: np.ndarray
    history_len: int
    gap_ms: int
    params: BlendParams

    def apply(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(blended scores (C,) float32, trending (C,) bool, the trend's weight)."""
        blended, flags = blend_scores(scores, self.trend, self.history_len, self.gap_ms, self.params)
        weight = float(self.params.weight(np.array([self.history_len]), np.array([self.gap_ms]))[0])
        return blended, flags, weight
