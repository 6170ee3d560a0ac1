"""Ranked-list assembly: candidates + scores -> the `ranked-lists` record."""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np


def top_k(candidates: Sequence[str], scores: Sequence[float], k: int | None) -> list[dict[str, Any]]:
    """The top min(k, len(candidates)) of `candidates` by descending score.

    Ties keep request order (stable sort), so equal scores never shuffle between replays.
    """
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    n = len(candidates) if k is None else min(k, len(candidates))
    return [{"item_id": candidates[i], "score": float(s[i])} for i in order[:n]]


def ranked_list(request_id: str, user_id: str, candidates: Sequence[str], scores: Sequence[float] | None,
                k: int | None, model_version: str, history_len: int, ts: int, emitted_at: int,
                arm: str = "main", order: Sequence[int] | None = None,
                reasons: Sequence[dict[str, Any]] | None = None, trend_weight: float | None = None) -> dict[str, Any]:
    """The `ranked-lists` value for one request.

    `scores is None` (or any non-finite score) means the model could not score this request: the
    list falls back to request order with score 0 and `fallback: true`, rather than being dropped.
    A user with no history yet is also flagged `fallback` (the model scores it without personal
    signal). `model_version` is the version that scored the list (or would have, for a fallback) and
    `arm` the A/B arm the user is in (`udfs.control`).

    `order` (indices into the candidates, the shown list) replaces the top-k by score (MMR,
    udfs/content.py); `reasons`, aligned with the shown list, go on each item as `reason`.
    Neither applies to a fallback list.

    `trend_weight` (udfs/trending.py): the scores blend model and trend with this weight on the
    trend; written as `trend_weight`. A user with no history served from the trend is not a fallback.
    """
    scores_ok = scores is not None and bool(np.all(np.isfinite(np.asarray(scores, dtype=np.float64))))
    if not scores_ok:
        scores = [0.0] * len(candidates)
        order = reasons = trend_weight = None
    if order is None:
        items = top_k(candidates, scores, k)
    else:
        if len(scores) != len(candidates):
            raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
        items = [{"item_id": candidates[i], "score": float(scores[i])} for i in order]
    if reasons is not None:
        if len(reasons) != len(items):
            raise ValueError(f"{len(items)} shown items but {len(reasons)} reasons")
        for item, reason in zip(items, reasons):
            item["reason"] = reason
    record = {
        "request_id": request_id,
        "user_id": user_id,
        "items": items,
        "model_version": model_version,
        "arm": arm,
        "history_len": history_len,
        "fallback": (not scores_ok) or (history_len == 0 and trend_weight is None),
        "ts": ts,
        "emitted_at": emitted_at,
    }
    if trend_weight is not None:
        record["trend_weight"] = round(trend_weight, 4)
    return record


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))
