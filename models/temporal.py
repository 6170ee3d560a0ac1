"""The temporal protocol: model, trend and their learned blend at a global time cut.

    python -m models.temporal $DATA --model models/sasrec/cut2001 --valid-model models/sasrec/cut20001202 --write

Requests (any event log in the `user-events` contract, any cut):
- ``cut``: each user's first interaction at or after the cut, from all that user's events before
  it; a user with nothing before the cut is cold (history_len 0);
- ``gap``: after the cut, each user's first interaction whose previous one (same user) is at least
  ``--gap-days`` earlier, from all events before it (a returning user);
- ``session``: after the cut, interactions whose previous one (same user) is less than
  ``--session-minutes`` earlier, from all events before it, the session's so far included (as the
  live job holds them): what most of a served stream asks. Sampled uniformly over those
  interactions (seeded), at most ``--session-per-user`` per user and ``--session-max`` in all.

Requests whose true item the model never saw are left out (counted): no score can rank them.
Three arms on the same requests and candidates:
- ``model``: the ONNX model (``onnx_scorer``, histories truncated to its max_len, as everywhere);
- ``popular``: the trend alone: ``udfs.trending`` decayed counts of every event of every user
  strictly before the request's time, at the blend's half-life;
- ``blend``: ``udfs.trending.blend_batch``, the served scorer's code, with ``BlendParams`` tuned on
  a validation cut (``--valid-cut``, default cut - 30 days) with a model trained before it
  (``--valid-model``), on requests before the test cut only.
Candidates: ``uniform100`` (the true item + 100 items the user never interacted with anywhere in
the log, seeded) and ``full`` (every item of the model, the user's history excluded), ties against
the true item, as in ``models.protocols``. Tuning (``tune``): a grid over the half-life and a, b, c
of ``w = sigmoid(a + b * log1p(history_len) + c * log1p(gap_days))`` on the validation requests of
all three kinds and both protocols, so that the blend beats both the model and the trend alone in
every (kind, protocol) cell: the worst cell's relative lift over the better single signal first,
then the mean lift (``objective``).

``--write`` saves ``blend.json`` into the test model's directory (``BlendParams.save``, what the job
loads) and ``"temporal"`` into its metrics.json; the full result (validation, per half-life, per
history-length bucket) goes to ``<out>/temporal.json`` and a plot to ``<out>/temporal.png``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import FIRST_ITEM_INDEX, METRICS_FILE, OOV_INDEX, PAD_INDEX, ModelArtifact, load_artifact
from models.errors import DataError, ModelError
from models.evaluate import train_cut_ms
from models.eventlog import EventLog, add_data_args, data_from_args, parse_time_ms
from models.metrics import ndcg_at_k, rank_of_target, summarize
from models.protocols import (DEFAULT_SEED, N_SAMPLED_NEGATIVES, EvalTask, Scorer, _pad_batch, fewest_never_seen,
                              sample_negatives)
from udfs.trending import DAY_MS, BlendParams, blend_batch, blend_scales, decay

log = logging.getLogger("models.temporal")  # not __name__: it is "__main__" under -m

HOUR_MS = 3_600_000
HALF_LIVES_MS = (6 * HOUR_MS, DAY_MS, 3 * DAY_MS, 7 * DAY_MS, 14 * DAY_MS)
A_GRID = (-8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
B_GRID = (-1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
C_GRID = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
KINDS = ("cut", "gap", "session")
ARMS = ("model", "popular", "blend")
PROTOCOLS = ("uniform100", "full")
HISTORY_BUCKETS = (0, 1, 5, 20, 50, 100, 200, 500)  # lower edges of the history-length buckets
DEFAULT_GAP_DAYS = 30.0
DEFAULT_VALID_OFFSET_DAYS = 30.0
RESULT_FILE = "temporal.json"
PLOT_FILE = "temporal.png"
DEFAULT_SESSION_MINUTES = 60.0
DEFAULT_SESSION_MAX = 2000
DEFAULT_SESSION_PER_USER = 5
OBJECTIVE = ("per (kind, protocol) cell, the relative lift of NDCG@10 over the better of model and trend alone: "
             "the worst cell first (capped at 0), then the mean over cells")


def half_life_label(ms: int) -> str:
    """6h, 1d, 14d, ... (hours below a day)."""
    return f"{ms // DAY_MS}d" if ms % DAY_MS == 0 else f"{ms / HOUR_MS:g}h"


def parse_half_life(text: str) -> int:
    """'6h', '1d', '90m' or plain milliseconds -> ms."""
    s = text.strip().lower()
    units = {"m": 60_000, "h": HOUR_MS, "d": DAY_MS}
    if s and s[-1] in units:
        return int(round(float(s[:-1]) * units[s[-1]]))
    return int(s)


@dataclass(frozen=True)
class Grid:
    """The tuning grid: half-lives (ms) and the a, b, c of ``BlendParams``."""

    half_lives_ms: tuple[int, ...] = HALF_LIVES_MS
    a: tuple[float, ...] = A_GRID
    b: tuple[float, ...] = B_GRID
    c: tuple[float, ...] = C_GRID

    def describe(self) -> dict[str, Any]:
        return {"half_life_ms": list(self.half_lives_ms), "a": list(self.a), "b": list(self.b), "c": list(self.c)}


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Requests:
    """Interactions to predict, as rows of an ``EventLog`` (index into its event arrays)."""

    rows: np.ndarray  # (R,) int64, ascending
    user: np.ndarray  # (R,) int64 user index
    ts: np.ndarray  # (R,) int64 epoch ms of the request (= of the true interaction)
    history_len: np.ndarray  # (R,) int64 events of the user before it
    gap_ms: np.ndarray  # (R,) int64 time since the user's previous event (0 without one)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, keep: np.ndarray) -> "Requests":
        return Requests(self.rows[keep], self.user[keep], self.ts[keep], self.history_len[keep], self.gap_ms[keep])


def _user_of(log_: EventLog) -> np.ndarray:
    return np.repeat(np.arange(log_.n_users, dtype=np.int64), np.diff(log_.offsets))


def _at_rows(log_: EventLog, rows: np.ndarray) -> Requests:
    """Requests at event ``rows`` (sorted): history = all the user's events before each row."""
    rows = np.asarray(rows, np.int64)
    user = _user_of(log_)[rows]
    history_len = rows - log_.offsets[user]
    prev = np.maximum(rows - 1, 0)
    gap = np.where(history_len > 0, log_.ts[rows] - log_.ts[prev], 0).astype(np.int64)
    return Requests(rows, user, log_.ts[rows].astype(np.int64), history_len.astype(np.int64), gap)


def _since_previous(log_: EventLog) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool: the event has an earlier one by the same user; (N,) int64 ms since that one (0 if none)."""
    user_of = _user_of(log_)
    prev_same_user = np.zeros(len(log_.ts), bool)
    prev_same_user[1:] = user_of[1:] == user_of[:-1]
    since_prev = np.zeros(len(log_.ts), np.int64)
    since_prev[1:] = log_.ts[1:] - log_.ts[:-1]
    return prev_same_user, np.where(prev_same_user, since_prev, 0)


def _first_per_user(log_: EventLog, mask: np.ndarray) -> Requests:
    """The first event of each user where ``mask`` holds."""
    user_of = _user_of(log_)
    idx = np.flatnonzero(mask)
    _, first = np.unique(user_of[idx], return_index=True)
    return _at_rows(log_, np.sort(idx[first]))


def cut_requests(log_: EventLog, cut_ms: int, until_ms: int | None = None) -> Requests:
    """Each user's first interaction at or after ``cut_ms`` (and before ``until_ms``)."""
    mask = log_.ts >= cut_ms
    first = _first_per_user(log_, mask)
    return first if until_ms is None else first.take(first.ts < until_ms)


def gap_requests(log_: EventLog, cut_ms: int, gap_ms: int, until_ms: int | None = None) -> Requests:
    """After ``cut_ms`` (and before ``until_ms``): each user's first interaction whose previous one is
    at least ``gap_ms`` earlier (a user's very first interaction has none: not a return)."""
    prev_same_user, since_prev = _since_previous(log_)
    mask = (log_.ts >= cut_ms) & prev_same_user & (since_prev >= gap_ms)
    if until_ms is not None:
        mask &= log_.ts < until_ms
    return _first_per_user(log_, mask)


def session_requests(log_: EventLog, cut_ms: int, within_ms: int, n_max: int, per_user: int, seed: int,
                     until_ms: int | None = None) -> Requests:
    """After ``cut_ms`` (and before ``until_ms``): interactions whose previous one by the same user is
    less than ``within_ms`` earlier (the user is in a session; the history includes the session's
    events so far, after the cut too, as the live job holds them).

    A served stream asks once per interaction, so heavy users ask most: the sample is uniform over
    the eligible interactions (seeded), at most ``per_user`` per user so that a few heavy users do
    not make up the whole set, and at most ``n_max`` in all.
    """
    if within_ms <= 0 or n_max < 0 or per_user < 1:
        raise ModelError(f"session requests: within_ms {within_ms} must be > 0, n_max {n_max} >= 0, "
                         f"per_user {per_user} >= 1")
    prev_same_user, since_prev = _since_previous(log_)
    mask = (log_.ts >= cut_ms) & prev_same_user & (since_prev < within_ms)
    if until_ms is not None:
        mask &= log_.ts < until_ms
    eligible = np.random.default_rng(seed).permutation(np.flatnonzero(mask))
    user = _user_of(log_)[eligible]
    # Rank of each draw among its user's draws, in draw order: keep the first `per_user` of each.
    order = np.argsort(user, kind="stable")
    starts = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1]])
    rank = np.empty(len(eligible), np.int64)
    rank[order] = np.arange(len(eligible)) - np.repeat(starts, np.diff(np.r_[starts, len(eligible)]))
    rows = eligible[rank < per_user][:n_max]
    return _at_rows(log_, np.sort(rows))


def union(*sets: Requests) -> Requests:
    """The distinct requests of several sets, by event row."""
    cat = [np.concatenate([getattr(s, f) for s in sets]) for f in ("rows", "user", "ts", "history_len", "gap_ms")]
    _, first = np.unique(cat[0], return_index=True)
    return Requests(*(c[first].astype(np.int64) for c in cat))


# ------------------------------------------------------------------------------------------------ trend


def trend_at(item_index: np.ndarray, ts_ms: np.ndarray, n_items: int, at_ms: np.ndarray, half_life_ms: int,
             columns: np.ndarray | None = None) -> np.ndarray:
    """Decayed counts of the events (item_index (N,), ts_ms (N,)) strictly before each ``at_ms[r]``:
    (R, n_items) float64, or (R, C) of ``columns`` (R, C) when given.

    Row r equals ``udfs.trending.decayed_counts`` of the events with ``ts < at_ms[r]`` at ``at_ms[r]``;
    computed in one sweep over requests in time order (the running count is decayed from one
    request's time to the next and the events in between are added at their age), so the cost is
    O(N + R * n_items) instead of O(N * R), and nothing is rebased or overflows.
    """
    item_index = np.asarray(item_index, np.int64)
    ts_ms = np.asarray(ts_ms, np.int64)
    at_ms = np.asarray(at_ms, np.int64)
    order = np.argsort(ts_ms, kind="stable")
    ev_ts, ev_item = ts_ms[order], item_index[order]
    req_order = np.argsort(at_ms, kind="stable")
    ends = np.searchsorted(ev_ts, at_ms[req_order], side="left")  # events strictly before
    width = n_items if columns is None else columns.shape[1]
    out = np.empty((len(at_ms), width), np.float64)
    counts = np.zeros(n_items, np.float64)
    now, start = None, 0
    for r, end in zip(req_order, ends):
        t = int(at_ms[r])
        if now is not None and t > now:
            counts *= decay(float(t - now), half_life_ms)
        now = t
        if end > start:
            w = decay((t - ev_ts[start:end]).astype(np.float64), half_life_ms)
            counts += np.bincount(ev_item[start:end], weights=w, minlength=n_items)
            start = end
        out[r] = counts if columns is None else counts[columns[r]]
    return out


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Encoded:
    """A log in one model's indices, and the requests it can rank."""

    task: EvalTask  # histories / events / targets / interacted of the kept requests
    requests: Requests  # kept requests (target known to the model)
    dropped_unknown: int  # requests whose true item the model never saw
    item_index: np.ndarray  # (N,) model index of every event of the log (the trend's input)
    ts: np.ndarray  # (N,) ms


def encode(log_: EventLog, art: ModelArtifact, requests: Requests) -> Encoded:
    """Histories = all the user's events before each request (left_pad keeps the last max_len)."""
    item_lookup = np.array([art.item_to_index.get(str(i), OOV_INDEX) for i in log_.item_ids], np.int64)
    event_lookup = np.array([art.event_to_index.get(str(e), PAD_INDEX) for e in log_.event_names], np.int64)
    items, events = item_lookup[log_.items], event_lookup[log_.events]
    keep = items[requests.rows] != OOV_INDEX
    kept = requests.take(keep)
    histories, hist_events, interacted = [], [], []
    for r, u in zip(kept.rows, kept.user):
        s = log_.user_slice(int(u))
        histories.append(items[s.start:r])
        hist_events.append(events[s.start:r])
        interacted.append(np.unique(items[s]))  # everything the user ever touched, in the whole log
    task = EvalTask(histories=histories, events=hist_events, targets=items[kept.rows].astype(np.int64),
                    interacted=interacted, n_items=art.n_items)
    return Encoded(task, kept, int((~keep).sum()), items, log_.ts.astype(np.int64))


def uniform_candidates(task: EvalTask, seed: int) -> np.ndarray:
    """(E, 1 + n): the target, then ``models.protocols.sample_negatives`` (n = 100 unless the catalogue is tiny)."""
    n = min(N_SAMPLED_NEGATIVES, fewest_never_seen(task))
    if n < 1:
        raise ModelError("uniform100: some user interacted with every item; no negatives to sample")
    if n < N_SAMPLED_NEGATIVES:
        log.warning("uniform100: catalogue too small for %d negatives per request, sampling %d",
                    N_SAMPLED_NEGATIVES, n)
    return np.concatenate([task.targets[:, None], sample_negatives(task, seed, n=n)], axis=1)


def all_items(n_items: int) -> np.ndarray:
    return np.arange(FIRST_ITEM_INDEX, n_items, dtype=np.int64)


def model_scores(scorer: Scorer, task: EvalTask, max_len: int, candidates: np.ndarray | None = None,
                 batch_size: int = 256) -> np.ndarray:
    """(E, C) float32 scores of ``candidates`` (E, C), or of every item (E, n_items - 2) when None."""
    everything = all_items(task.n_items)
    width = len(everything) if candidates is None else candidates.shape[1]
    out = np.empty((len(task.targets), width), np.float32)
    for start in range(0, len(task.targets), batch_size):
        idx = np.arange(start, min(start + batch_size, len(task.targets)))
        items, events = _pad_batch(task, idx, max_len)
        cands = np.broadcast_to(everything, (len(idx), width)) if candidates is None else candidates[idx]
        out[idx] = np.asarray(scorer(items, events, np.ascontiguousarray(cands)), np.float32)
    return out


def sampled_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of column 0 (the target) among the other columns; ties count against it."""
    scores = np.asarray(scores, np.float64)
    return rank_of_target(scores[:, 0], scores[:, 1:])


def full_mask(task: EvalTask, idx: np.ndarray | None = None) -> np.ndarray:
    """(len(idx), I) bool: the items each target is ranked against under the full protocol (not
    itself, not the user's history); columns = item index - FIRST_ITEM_INDEX. Default: every request."""
    idx = np.arange(len(task.targets)) if idx is None else np.asarray(idx)
    mask = np.ones((len(idx), task.n_items - FIRST_ITEM_INDEX), bool)
    for r, i in enumerate(idx):
        h = task.histories[i]
        mask[r, h[h >= FIRST_ITEM_INDEX] - FIRST_ITEM_INDEX] = False
    mask[np.arange(len(idx)), task.targets[idx] - FIRST_ITEM_INDEX] = False
    return mask


def full_ranks(scores: np.ndarray, task: EvalTask, idx: np.ndarray) -> np.ndarray:
    """Rank of each target among all items (columns = item index - 2), the user's history excluded
    (as ``models.protocols.ranks_full``)."""
    scores = np.asarray(scores, np.float64)
    col = task.targets[idx] - FIRST_ITEM_INDEX
    return rank_of_target(scores[np.arange(len(idx)), col], scores, full_mask(task, idx))


def blend_ranks_sampled(model: np.ndarray, trend: np.ndarray, req: Requests, params: BlendParams) -> np.ndarray:
    return sampled_ranks(blend_batch(model, trend, req.history_len, req.gap_ms, params)[0])


# ----------------------------------------------------------------------------------------------- tuning


# Blend weights at which the tuner ranks each request (0 = the model alone, 1 = the trend alone):
# a request's rank is looked up at its weight rounded to this grid (steps of 0.005).
WEIGHTS = np.linspace(0.0, 1.0, 201)
Cell = tuple[str, str]  # (kind, protocol)


def weight_ranks(model: np.ndarray, trend: np.ndarray, target: np.ndarray, counted: np.ndarray | None = None,
                 weights: np.ndarray = WEIGHTS, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """(E, W) int32: each request's rank of its target (column ``target`` (E,)) among the ``counted``
    (E, C) candidates (default: every other column), scored by ``blend_batch`` at each of the
    ascending ``weights`` (ties against the target).

    Why a table: a request's rank depends on (a, b, c) only through its weight w, so it is computed
    once per w here, and every grid point is then a lookup (``lookup_ranks``) instead of a ranking
    of all items: what makes tuning on the full protocol affordable.

    How, in O(C) per request rather than O(W C): with A = z_model(j) - z_model(target) and D the
    same for the trend, item j counts at w iff (1 - w) A + w D >= 0, linear in w. It counts at every
    w if A, D >= 0, at none if both < 0, and otherwise on one side of w* = A / (A - D): w <= w* if
    A >= 0 > D, w >= w* if D >= 0 > A. So each request's counts at all weights are a histogram of
    its w* over the grid plus a cumulative sum. At w = 0 and 1 it is exact (w* = 0 when A = 0, w* = 1
    exactly when D = 0, as ``blend_batch`` ties them). Requests go in chunks of ``chunk_bytes``.
    """
    z_model, z_trend = blend_scales(model, trend)
    weights = np.asarray(weights, np.float64)
    n_w = len(weights)
    out = np.empty((len(model), n_w), np.int32)
    chunk = max(1, chunk_bytes // (8 * 4 * max(1, model.shape[1])))
    for start in range(0, len(model), chunk):
        rows = np.arange(start, min(start + chunk, len(model)))
        local = np.arange(len(rows))
        a = z_model[rows] - z_model[rows, target[rows]][:, None]  # (B, C)
        d = z_trend[rows] - z_trend[rows, target[rows]][:, None]
        if counted is None:
            keep = np.ones(a.shape, bool)
            keep[local, target[rows]] = False
        else:
            keep = counted[rows]
        always = (keep & (a >= 0) & (d >= 0)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            w_star = a / (a - d)
        up_to = keep & (a >= 0) & (d < 0)   # counts for w <= w*: at grid points 0 .. last <= w*
        from_ = keep & (a < 0) & (d >= 0)   # counts for w >= w*: at grid points first >= w* .. W-1
        r_up, c_up = np.nonzero(up_to)
        last = np.searchsorted(weights, w_star[r_up, c_up], side="right") - 1  # -1: at no grid point
        r_from, c_from = np.nonzero(from_)
        first = np.searchsorted(weights, w_star[r_from, c_from], side="left")  # n_w: at no grid point
        # ends[r, k]: items whose run ends at grid point k (counted at 0..k); starts likewise from k.
        ends = np.bincount(r_up * (n_w + 1) + (last + 1), minlength=len(rows) * (n_w + 1)).reshape(len(rows), n_w + 1)
        starts = np.bincount(r_from * (n_w + 1) + first, minlength=len(rows) * (n_w + 1)).reshape(len(rows), n_w + 1)
        counted_up = ends[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]  # items with last >= k
        counted_from = starts.cumsum(axis=1)[:, :n_w]                # items with first <= k
        out[rows] = always[:, None] + counted_up + counted_from
    return out


def lookup_ranks(table: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(E,) ranks at each request's weight w (E,), from a ``weight_ranks`` table (weights on WEIGHTS)."""
    col = np.clip(np.rint(np.asarray(w) * (table.shape[1] - 1)).astype(np.int64), 0, table.shape[1] - 1)
    return table[np.arange(len(table)), col]


def sampled_weight_ranks(model: np.ndarray, trend: np.ndarray) -> np.ndarray:
    """``weight_ranks`` on sampled candidates (E, 1 + n), column 0 = the true item."""
    return weight_ranks(model, trend, np.zeros(len(model), np.int64))


def objective(blend: Mapping[Cell, float], model: Mapping[Cell, float], trend: Mapping[Cell, float]
              ) -> tuple[tuple[float, float], dict[Cell, float]]:
    """(key, lift per cell) of one blend's mean NDCG@10 per (kind, protocol) cell.

    lift = (blend - the better of model and trend alone) / that better one: what the blend adds
    over serving the best single signal of that cell. key = (the worst lift, capped at 0; the mean
    lift), compared in that order: first beat both everywhere (or come closest), then gain most.
    Relative, so that full ranking (NDCG@10 ~0.05) counts as much as 100 candidates (~0.4).
    """
    lifts = {cell: (blend[cell] - max(model[cell], trend[cell])) / max(model[cell], trend[cell], 1e-9)
             for cell in blend}
    return (min(0.0, min(lifts.values())), float(np.mean(list(lifts.values())))), lifts


def tune(tables: Mapping[int, Mapping[str, np.ndarray]], req: Requests, grid: Grid,
         sets: Mapping[str, np.ndarray] | None = None) -> tuple[BlendParams, float, list[dict[str, Any]]]:
    """Grid search of (half-life, a, b, c) for ``blend_batch``: ``tables`` {half_life_ms: {protocol:
    (E, W) weight_ranks}}, ``sets`` {kind: positions in req} (default: one kind, every request).

    Why this objective (``objective``): the kinds want opposite weights (a cold or returning user is
    served better by the trend, a user in a session by the model) and the protocols differ too
    (among all items the popular head is worth more than among 100 uniform ones). Pooled, the
    bigger or easier kind or protocol decides for the others: tuned on cut + gap requests and
    uniform100 alone, the weight grew with the history and users in a session were served mostly
    the trend; with sessions added, the blend still lost to the trend alone on full ranking. So
    every (kind, protocol) cell must gain over the better single signal, the worst cell first.
    Ties keep the first in grid order.

    Returns the best params (``tuned_on`` empty), its mean lift, and per half-life the best (a, b,
    c) with its lifts and NDCG@10 per cell, and the model's and the trend's alone.
    """
    sets = {"all": np.arange(len(req))} if sets is None else dict(sets)
    first = next(iter(tables.values()))
    protocols = list(first)

    def cells(ranks: Mapping[str, np.ndarray]) -> dict[Cell, float]:
        return {(k, p): float(ndcg_at_k(ranks[p][pos], 10).mean()) for k, pos in sets.items() for p in protocols}

    def nested(values: Mapping[Cell, float]) -> dict[str, dict[str, float]]:
        return {k: {p: round(values[(k, p)], 6) for p in protocols} for k in sets}

    model = cells({p: first[p][:, 0] for p in protocols})  # w = 0 at every half-life
    best: tuple[tuple[float, float], BlendParams] | None = None
    per_half_life = []
    combos = list(itertools.product(grid.a, grid.b, grid.c))
    for h in grid.half_lives_ms:
        t0 = time.perf_counter()
        trend = cells({p: tables[h][p][:, -1] for p in protocols})  # w = 1
        h_best: tuple[tuple[float, float], BlendParams, dict, dict] | None = None
        for a, b, c in combos:
            params = BlendParams(float(a), float(b), float(c), int(h))
            w = params.weight(req.history_len, req.gap_ms)
            blend = cells({p: lookup_ranks(tables[h][p], w) for p in protocols})
            key, lifts = objective(blend, model, trend)
            if h_best is None or key > h_best[0]:
                h_best = (key, params, lifts, blend)
        assert h_best is not None
        key, params, lifts, blend = h_best
        per_half_life.append({"half_life_ms": int(h), "half_life": half_life_label(int(h)),
                              "a": params.a, "b": params.b, "c": params.c,
                              "valid_objective": round(key[1], 6), "valid_worst_lift": round(min(lifts.values()), 6),
                              "valid_lift": nested(lifts), "valid_blend": nested(blend),
                              "valid_popular": nested(trend), "valid_model": nested(model),
                              # the trend alone's mean over kinds on uniform100 (picks popular_own_half_life)
                              "valid_popular_ndcg@10": round(float(np.mean([trend[(k, protocols[0])] for k in sets])), 6)})
        log.info("tuning: half-life %s: best a=%g b=%g c=%g, lift over the better single signal: worst %+.3f, "
                 "mean %+.3f (%s; %d combos, %.1f s)", half_life_label(int(h)), params.a, params.b, params.c,
                 min(lifts.values()), key[1], ", ".join(f"{k}/{p} {v:+.3f}" for (k, p), v in lifts.items()),
                 len(combos), time.perf_counter() - t0)
        if best is None or key > best[0]:
            best = (key, params)
    assert best is not None
    if best[0][0] < 0:
        log.warning("tuning: no params of the grid beat both model and trend in every cell on validation; the "
                    "best falls %.1f %% short in its worst cell", -100 * best[0][0])
    return best[1], best[0][1], per_half_life


# ------------------------------------------------------------------------------------------- evaluation


@dataclass
class Scored:
    """One model's requests with everything the arms need (model scores fixed; trends per half-life)."""

    enc: Encoded
    sampled: np.ndarray  # (E, 1 + n) candidates, column 0 = target
    model_sampled: np.ndarray  # (E, 1 + n) float32
    model_full: np.ndarray | None  # (E, I) float32, or None when full ranking is not needed

    @property
    def req(self) -> Requests:
        return self.enc.requests

    def trend_sampled(self, half_life_ms: int) -> np.ndarray:
        return trend_at(self.enc.item_index, self.enc.ts, self.enc.task.n_items, self.req.ts, half_life_ms,
                        columns=self.sampled)

    def trend_full(self, half_life_ms: int) -> np.ndarray:
        return trend_at(self.enc.item_index, self.enc.ts, self.enc.task.n_items, self.req.ts,
                        half_life_ms)[:, FIRST_ITEM_INDEX:]


def score_requests(log_: EventLog, art: ModelArtifact, requests: Requests, seed: int, full: bool = True,
                   threads: int | None = 1, scorer: Scorer | None = None) -> Scored:
    from models.export import onnx_scorer

    enc = encode(log_, art, requests)
    if not len(enc.requests):
        raise ModelError(f"{art.path}: no request has a true item the model knows")
    scorer = scorer or onnx_scorer(art.onnx_path, threads=threads)
    t0 = time.perf_counter()
    sampled = uniform_candidates(enc.task, seed)
    model_s = model_scores(scorer, enc.task, art.max_len, sampled)
    model_f = model_scores(scorer, enc.task, art.max_len) if full else None
    log.info("%s: scored %d requests (%d dropped: true item unknown to the model) in %.1f s", art.path,
             len(enc.requests), enc.dropped_unknown, time.perf_counter() - t0)
    return Scored(enc, sampled, model_s, model_f)


def arm_ranks(s: Scored, params: BlendParams, protocols: Sequence[str] = PROTOCOLS,
              batch_size: int = 512) -> dict[str, dict[str, np.ndarray]]:
    """{arm: {protocol: (E,) ranks}} for model, popular (trend at params' half-life) and blend."""
    out: dict[str, dict[str, np.ndarray]] = {arm: {} for arm in ARMS}
    req, h = s.req, params.half_life_ms
    if "uniform100" in protocols:
        trend = s.trend_sampled(h)
        out["model"]["uniform100"] = sampled_ranks(s.model_sampled)
        out["popular"]["uniform100"] = sampled_ranks(trend)
        out["blend"]["uniform100"] = blend_ranks_sampled(s.model_sampled, trend, req, params)
    if "full" in protocols:
        if s.model_full is None:
            raise ModelError("full ranking needs the model's scores of every item")
        trend = s.trend_full(h)
        ranks = {arm: np.empty(len(req), np.int64) for arm in ARMS}
        for start in range(0, len(req), batch_size):
            idx = np.arange(start, min(start + batch_size, len(req)))
            part = req.take(idx)
            blended = blend_batch(s.model_full[idx], trend[idx], part.history_len, part.gap_ms, params)[0]
            for arm, scores in (("model", s.model_full[idx]), ("popular", trend[idx]), ("blend", blended)):
                ranks[arm][idx] = full_ranks(scores, s.enc.task, idx)
        for arm in ARMS:
            out[arm]["full"] = ranks[arm]
    return out


def bucket_of(history_len: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(HISTORY_BUCKETS), history_len, side="right") - 1


def bucket_labels() -> list[str]:
    edges = list(HISTORY_BUCKETS)
    labels = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] - 1 if i + 1 < len(edges) else None
        labels.append(str(lo) if hi == lo else (f"{lo}-{hi}" if hi is not None else f"{lo}+"))
    return labels


def summarize_sets(ranks: dict[str, dict[str, np.ndarray]], sets: Mapping[str, np.ndarray]
                   ) -> dict[str, dict[str, dict[str, dict]]]:
    """{arm: {kind: {protocol: summary}}} over each set's positions."""
    return {arm: {kind: {proto: summarize(r[pos]) for proto, r in by_proto.items()} for kind, pos in sets.items()}
            for arm, by_proto in ranks.items()}


def by_bucket(ranks: dict[str, dict[str, np.ndarray]], req: Requests, sets: Mapping[str, np.ndarray]
              ) -> dict[str, dict[str, list[dict]]]:
    """{kind: {protocol: [{bucket, requests, model, popular, blend (ndcg@10)}]}}."""
    labels = bucket_labels()
    out: dict[str, dict[str, list[dict]]] = {}
    for kind, pos in sets.items():
        buckets = bucket_of(req.history_len[pos])
        out[kind] = {}
        for proto in ranks["model"]:
            rows = []
            for b, label in enumerate(labels):
                sel = pos[buckets == b]
                if not len(sel):
                    continue
                rows.append({"bucket": label, "requests": int(len(sel)),
                             **{arm: round(float(ndcg_at_k(ranks[arm][proto][sel], 10).mean()), 6) for arm in ARMS}})
            out[kind][proto] = rows
    return out


def request_counts(req_sets: Mapping[str, Requests], enc: Encoded, sets: Mapping[str, np.ndarray]) -> dict:
    counts = {}
    for kind, pos in sets.items():
        counts[kind] = {"requests": int(len(pos)), "cold": int((enc.requests.history_len[pos] == 0).sum()),
                        "before_dropping": int(len(req_sets[kind])),
                        "median_history_len": float(np.median(enc.requests.history_len[pos])) if len(pos) else None,
                        "median_gap_days": round(float(np.median(enc.requests.gap_ms[pos])) / DAY_MS, 3)
                        if len(pos) else None}
    counts["distinct"] = int(len(enc.requests))
    counts["dropped_unknown_item"] = enc.dropped_unknown
    return counts


def positions(requests: Requests, kept_rows: np.ndarray) -> np.ndarray:
    """Positions in ``kept_rows`` (sorted) of the requests of a set that were kept."""
    where = np.searchsorted(kept_rows, requests.rows)
    where = np.minimum(where, len(kept_rows) - 1)
    return where[kept_rows[where] == requests.rows].astype(np.int64)


@dataclass(frozen=True)
class Kinds:
    """What makes a request of each kind: the return gap, and the session's window and sample."""

    gap_ms: int = int(DEFAULT_GAP_DAYS * DAY_MS)
    session_within_ms: int = int(DEFAULT_SESSION_MINUTES * 60_000)
    session_max: int = DEFAULT_SESSION_MAX
    session_per_user: int = DEFAULT_SESSION_PER_USER

    def describe(self) -> dict[str, Any]:
        return {"gap_days": self.gap_ms / DAY_MS, "session_minutes": self.session_within_ms / 60_000,
                "session_max": self.session_max, "session_per_user": self.session_per_user}


def request_sets(log_: EventLog, cut_ms: int, kinds: Kinds, seed: int, until_ms: int | None = None
                 ) -> tuple[Requests, dict[str, Requests]]:
    """The distinct requests and each kind's set, in ``KINDS`` order."""
    sets = {"cut": cut_requests(log_, cut_ms, until_ms), "gap": gap_requests(log_, cut_ms, kinds.gap_ms, until_ms),
            "session": session_requests(log_, cut_ms, kinds.session_within_ms, kinds.session_max,
                                        kinds.session_per_user, seed, until_ms)}
    return union(*sets.values()), sets


def _counts(sets: Mapping[str, Requests]) -> str:
    return " + ".join(f"{len(s)} {k}" for k, s in sets.items())


def _check_cut(art: ModelArtifact, cut_ms: int, role: str) -> None:
    trained = train_cut_ms(art)
    if trained is None:
        raise ModelError(f"{art.path}: the {role} model records no training cut; it may have seen the requests")
    if trained > cut_ms:
        raise ModelError(f"{art.path}: the {role} model was trained until {trained} ms, after the {role} cut "
                         f"{cut_ms} ms: it has seen the requests")
    if trained != cut_ms:
        log.warning("%s: the %s model was trained until %d ms, the %s cut is %d ms", art.path, role, trained,
                    role, cut_ms)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def run_temporal(log_: EventLog, model_dir: Path, valid_model_dir: Path, cut_ms: int | None = None,
                 valid_cut_ms: int | None = None, kinds: Kinds = Kinds(), grid: Grid = Grid(),
                 seed: int = DEFAULT_SEED, threads: int | None = 1) -> tuple[BlendParams, dict[str, Any]]:
    """Tune on the validation cut, evaluate on the test cut: (tuned params, the full result)."""
    art, valid_art = load_artifact(model_dir), load_artifact(valid_model_dir)
    cut_ms = train_cut_ms(art) if cut_ms is None else int(cut_ms)
    if cut_ms is None:
        raise ModelError(f"{model_dir}: no training cut recorded; give --cut")
    valid_cut_ms = int(cut_ms - DEFAULT_VALID_OFFSET_DAYS * DAY_MS) if valid_cut_ms is None else int(valid_cut_ms)
    if valid_cut_ms >= cut_ms:
        raise ModelError(f"the validation cut {valid_cut_ms} must be before the test cut {cut_ms}")
    _check_cut(art, cut_ms, "test")
    _check_cut(valid_art, valid_cut_ms, "validation")
    gap_days = kinds.gap_ms / DAY_MS

    # Validation: requests in [valid cut, test cut), the validation model, uniform100 for the grid.
    started = time.perf_counter()
    v_req, v_sets = request_sets(log_, valid_cut_ms, kinds, seed + 7, until_ms=cut_ms)
    log.info("validation: %s requests (%d distinct) in [%s, %s)", _counts(v_sets), len(v_req), iso(valid_cut_ms),
             iso(cut_ms))
    v = score_requests(log_, valid_art, v_req, seed + 7, full=True, threads=threads)
    assert v.model_full is not None
    targets, counted = v.enc.task.targets - FIRST_ITEM_INDEX, full_mask(v.enc.task)
    tables, t_tables = {}, time.perf_counter()
    for h in grid.half_lives_ms:
        tables[h] = {"uniform100": sampled_weight_ranks(v.model_sampled, v.trend_sampled(h)),
                     "full": weight_ranks(v.model_full, v.trend_full(h), targets, counted)}
    log.info("validation: ranks at %d weights x %d half-lives, both protocols, in %.1f s", len(WEIGHTS),
             len(grid.half_lives_ms), time.perf_counter() - t_tables)
    v_sets_pos = {k: positions(s, v.req.rows) for k, s in v_sets.items()}
    # Cold requests are served the trend whatever the params (w = 1): tuned on, they only dilute
    # their kind's lift (in ML-1M's validation month half the cut requests are new users).
    warm_pos = {k: pos[v.req.history_len[pos] > 0] for k, pos in v_sets_pos.items()}
    best, best_score, per_h = tune(tables, v.req, grid, {k: pos for k, pos in warm_pos.items() if len(pos)})
    tuned_on = {"valid_cut_ms": valid_cut_ms, "valid_cut": iso(valid_cut_ms), "until_ms": cut_ms,
                "model": str(valid_model_dir),
                "requests": f"{' + '.join(KINDS)} requests (distinct) in [valid cut, test cut)",
                "n_requests": int(len(v.req)), "n_requests_by_kind": {k: int(len(p)) for k, p in v_sets_pos.items()},
                "n_tuned_on_by_kind": {k: int(len(p)) for k, p in warm_pos.items()},
                **kinds.describe(), "grid": grid.describe(), "objective": OBJECTIVE,
                "valid_objective": round(best_score, 6), "seed": seed + 7,
                "tuned_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    params = BlendParams(best.a, best.b, best.c, best.half_life_ms, tuned_on)
    v_ranks = arm_ranks(v, params)
    validation = {"metrics": summarize_sets(v_ranks, v_sets_pos),
                  "requests": request_counts(v_sets, v.enc, v_sets_pos), "per_half_life": per_h}
    log.info("tuned: %s (valid objective %.4f)", {k: getattr(params, k) for k in ("a", "b", "c", "half_life_ms")},
             best_score)

    # Test: requests at or after the cut, the test model, both protocols.
    t_req, t_sets = request_sets(log_, cut_ms, kinds, seed)
    log.info("test: %s requests (%d distinct) from %s", _counts(t_sets), len(t_req), iso(cut_ms))
    t = score_requests(log_, art, t_req, seed, full=True, threads=threads)
    sets = {k: positions(s, t.req.rows) for k, s in t_sets.items()}
    ranks = arm_ranks(t, params)
    metrics = summarize_sets(ranks, sets)
    sensitivity, summaries = [], {}
    for row in per_h:
        h = row["half_life_ms"]
        hp = BlendParams(row["a"], row["b"], row["c"], h)
        r = ranks if h == params.half_life_ms and hp == params else arm_ranks(t, hp)
        summary = summaries[h] = summarize_sets(r, sets)
        sensitivity.append({**row, "test": {kind: {proto: {arm: summary[arm][kind][proto]["ndcg@10"]
                                                           for arm in ("popular", "blend")} for proto in PROTOCOLS}
                                            for kind in KINDS}})
        log.info("half-life %s: test blend ndcg@10 %s", row["half_life"],
                 " | ".join(f"{k} u100 {summary['blend'][k]['uniform100']['ndcg@10']:.4f} "
                            f"full {summary['blend'][k]['full']['ndcg@10']:.4f}" for k in KINDS))
    # The trend alone at its own best validation half-life (a fairer popularity baseline than the blend's).
    pop_row = max(per_h, key=lambda row: row["valid_popular_ndcg@10"])
    popular_own = {"half_life_ms": pop_row["half_life_ms"], "half_life": pop_row["half_life"],
                   "valid_ndcg@10": pop_row["valid_popular_ndcg@10"], **summaries[pop_row["half_life_ms"]]["popular"]}
    result: dict[str, Any] = {
        **metrics,
        "popular_own_half_life": popular_own,
        "requests": request_counts(t_sets, t.enc, sets),
        "blend_params": {"a": params.a, "b": params.b, "c": params.c, "half_life_ms": params.half_life_ms,
                         "half_life": half_life_label(params.half_life_ms)},
        "half_life_sensitivity": sensitivity,
        "settings": {"model": str(model_dir), "cut_ms": cut_ms, "cut": iso(cut_ms), **kinds.describe(),
                     "valid_model": str(valid_model_dir), "valid_cut_ms": valid_cut_ms, "valid_cut": iso(valid_cut_ms),
                     "seed": seed, "objective": OBJECTIVE, "grid": grid.describe()},
        "protocol": {
            "cut": "each user's first interaction at or after the cut; history = all that user's events before it "
                   "(none: cold, history_len 0)",
            "gap": f"after the cut, each user's first interaction at least {gap_days:g} days after their previous "
                   "one; history = all events before it",
            "session": f"after the cut, interactions less than {kinds.session_within_ms / 60_000:g} minutes after the "
                       f"user's previous one, sampled uniformly (seeded), at most {kinds.session_per_user} per user "
                       f"and {kinds.session_max} in all; history = all events before it, the session's included",
            "dropped": "requests whose true item the model never saw (no score can rank it)",
            "uniform100": "the true item + 100 items the user never interacted with anywhere in the log (seeded)",
            "full": "every item of the model's vocabulary, the user's history excluded",
            "model": "the ONNX model, history truncated to its max_len",
            "popular": "udfs.trending decayed counts of every event strictly before the request, at the blend's "
                       "half-life",
            "popular_own_half_life": "the same at the half-life where the trend alone scores best on validation",
            "blend": "udfs.trending.blend_batch with the tuned BlendParams (blend.json): "
                     "(1 - w) z(model) + w z(log1p(trend)), w = sigmoid(a + b log1p(history_len) + c log1p(gap_days))",
            "ties": "count against the true item",
            "validation": f"grid search on the validation cut with the validation model; objective: {OBJECTIVE}",
        },
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    full_result = {**result, "validation": validation, "by_history_len": by_bucket(ranks, t.req, sets),
                   "tuned_on": tuned_on, "seconds": round(time.perf_counter() - started, 1)}
    return params, full_result


# -------------------------------------------------------------------------------------------- reporting


def metrics_section(result: dict[str, Any]) -> dict[str, Any]:
    """What goes into the model's metrics.json (the full result minus validation and buckets)."""
    return {k: v for k, v in result.items() if k not in ("validation", "by_history_len", "seconds")}


def write_into_metrics(model_dir: Path, section: dict[str, Any]) -> Path:
    path = Path(model_dir) / METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["temporal"] = section
    path.write_text(json.dumps(metrics, indent=2))
    return path


def plot(result: dict[str, Any], path: Path) -> Path:
    """NDCG@10 (uniform100 and full) by history-length bucket for the three arms, one column per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(KINDS), figsize=(5.5 * len(KINDS), 6.5), squeeze=False)
    for i, kind in enumerate(KINDS):
        for j, proto in enumerate(PROTOCOLS):
            ax = axes[j][i]
            rows = result["by_history_len"][kind][proto]
            x = np.arange(len(rows))
            for k, arm in enumerate(ARMS):
                ax.bar(x + (k - 1) * 0.27, [r[arm] for r in rows], width=0.27, label=arm)
            ax.set_xticks(x, [f"{r['bucket']}\n({r['requests']})" for r in rows], fontsize=7)
            ax.set_title(f"{kind} requests, {proto}", fontsize=9)
            ax.set_ylabel("NDCG@10")
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("history length (requests)")
    p = result["blend_params"]
    fig.suptitle(f"temporal protocol, {result['settings']['model']}: blend a={p['a']:g} b={p['b']:g} c={p['c']:g} "
                 f"half-life {p['half_life']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(result: dict[str, Any]) -> str:
    """Markdown: arms x (kind, protocol) as NDCG@10 / HR@10 / MRR."""
    req, own = result["requests"], result["popular_own_half_life"]
    head = "| arm | " + " | ".join(f"{k} {p} ({req[k]['requests']:,} req.)" for k in KINDS for p in PROTOCOLS) + " |"
    rows = [(arm, result[arm]) for arm in ARMS] + [(f"popular, own half-life ({own['half_life']})", own)]
    lines = [head, "|---" * (1 + len(KINDS) * len(PROTOCOLS)) + "|"]
    for name, arm in rows:
        cells = [" / ".join(f"{arm[k][p][m]:.4f}" for m in ("ndcg@10", "hr@10", "mrr")) for k in KINDS for p in PROTOCOLS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("models").setLevel(logging.INFO)
    p = argparse.ArgumentParser(prog="python -m models.temporal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="the test model (trained before --cut)")
    p.add_argument("--valid-model", type=Path, required=True, help="the validation model (trained before --valid-cut)")
    p.add_argument("--cut", default=None, help="test cut, epoch ms or ISO date (default: the model's training cut)")
    p.add_argument("--valid-cut", default=None, help="validation cut (default: cut - 30 days)")
    p.add_argument("--gap-days", type=float, default=DEFAULT_GAP_DAYS, help="gap requests: days since the previous event")
    p.add_argument("--session-minutes", type=float, default=DEFAULT_SESSION_MINUTES,
                   help="session requests: less than this many minutes since the previous event")
    p.add_argument("--session-max", type=int, default=DEFAULT_SESSION_MAX,
                   help="session requests: at most this many per window (sampled, seeded)")
    p.add_argument("--session-per-user", type=int, default=DEFAULT_SESSION_PER_USER,
                   help="session requests: at most this many per user")
    p.add_argument("--half-lives", default=",".join(half_life_label(h) for h in HALF_LIVES_MS),
                   help="tuning grid of half-lives, e.g. 6h,1d,3d,7d,14d")
    p.add_argument("--a-grid", default=",".join(f"{x:g}" for x in A_GRID),
                   help="comma-separated a values (write --a-grid=-1,1 for a leading minus)")
    p.add_argument("--b-grid", default=",".join(f"{x:g}" for x in B_GRID))
    p.add_argument("--c-grid", default=",".join(f"{x:g}" for x in C_GRID))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", type=Path, default=Path("results/temporal"), help="temporal.json and temporal.png here")
    p.add_argument("--write", action="store_true", help="blend.json + metrics.json 'temporal' into --model")
    add_data_args(p, train_until=False)
    args = p.parse_args(argv)
    try:
        data = data_from_args(args)
        cut_ms, valid_cut_ms = parse_time_ms(args.cut), parse_time_ms(args.valid_cut)
    except DataError as exc:
        log.error("%s", exc)
        return 2
    grid = Grid(tuple(parse_half_life(h) for h in args.half_lives.split(",")),
                *(tuple(float(x) for x in g.split(",")) for g in (args.a_grid, args.b_grid, args.c_grid)))
    kinds = Kinds(int(round(args.gap_days * DAY_MS)), int(round(args.session_minutes * 60_000)), args.session_max,
                  args.session_per_user)
    params, result = run_temporal(data.log, args.model, args.valid_model, cut_ms, valid_cut_ms, kinds, grid,
                                  args.seed, args.threads)
    result["settings"]["dataset"] = data.description.get("dataset")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_FILE).write_text(json.dumps({**result, "blend_json": asdict(params)}, indent=2))
    log.info("wrote %s", args.out / RESULT_FILE)
    try:
        log.info("wrote %s", plot(result, args.out / PLOT_FILE))
    except ImportError as exc:  # matplotlib is optional
        log.warning("no plot: %s", exc)
    if args.write:
        log.info("wrote %s", params.save(args.model))
        log.info("wrote %s", write_into_metrics(args.model, metrics_section(result)))
    print(table(result))
    print("half-life sensitivity (test NDCG@10 of the blend, a/b/c tuned on validation at each half-life):")
    for row in result["half_life_sensitivity"]:
        cells = ", ".join(f"{k} {pr} {row['test'][k][pr]['blend']:.4f} (pop {row['test'][k][pr]['popular']:.4f})"
                          for k in KINDS for pr in PROTOCOLS)
        print(f"  {row['half_life']:>4}: a={row['a']:g} b={row['b']:g} c={row['c']:g} valid lift worst "
              f"{row['valid_worst_lift']:+.3f} mean {row['valid_objective']:+.3f} | test {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
