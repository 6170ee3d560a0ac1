"""Online evaluation of served ranked lists: delivery accounting, ranking quality, latency."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

from models.metrics import summarize


def delivery(request_ids: Iterable[str], outputs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """answered / missing / duplicated (extra copies) / conflicting (copies that differ) / unexpected."""
    wanted = set(request_ids)
    copies: dict[str, list[dict]] = defaultdict(list)
    for out in outputs:
        copies[out["value"]["request_id"]].append(out["value"])
    strip = lambda v: {k: x for k, x in v.items() if k != "emitted_at"}  # noqa: E731
    return {
        "sent": len(wanted),
        "answered": len(wanted & set(copies)),
        "missing": len(wanted - set(copies)),
        "duplicated": sum(len(c) - 1 for r, c in copies.items() if r in wanted),
        "conflicting": sum(any(strip(x) != strip(c[0]) for x in c) for r, c in copies.items() if r in wanted),
        "unexpected": len(set(copies) - wanted),
    }


def target_rank(items: list[Mapping[str, Any]], target: str) -> int:
    """0-based position of `target` in a served list; ties with the target count against it."""
    scores = {i["item_id"]: i["score"] for i in items}
    if target not in scores:
        return len(items)  # not served in the top-k: ranked below everything shown
    return int(sum(s >= scores[target] for item, s in scores.items() if item != target))


def ranking_quality(targets: Mapping[str, str], outputs: Iterable[Mapping[str, Any]], k: int = 10) -> dict:
    first: dict[str, Mapping] = {}
    for out in outputs:
        first.setdefault(out["value"]["request_id"], out["value"])
    ranks = np.array([target_rank(first[r]["items"], t) for r, t in targets.items() if r in first])
    return summarize(ranks, k) if ranks.size else {"users": 0}


def latency_ms(sent_at: Mapping[str, int], outputs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Request produced -> ranked list consumed, per first copy of each answer."""
    seen, lat = set(), []
    for out in outputs:
        rid = out["value"]["request_id"]
        if rid in sent_at and rid not in seen:
            seen.add(rid)
            lat.append(out["received_at"] - sent_at[rid])
    if not lat:
        return {}
    p = np.percentile(lat, [50, 95, 99])
    return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2]), "max": float(max(lat)), "n": len(lat)}


def feedback_metrics(samples: Iterable[Mapping[str, Any]], k: int = 10,
                     shown: Mapping[str, tuple[str, str]] | None = None) -> dict[str, dict[str, float]]:
    """Online metrics per model version and arm from `training-samples` records (jobs/feedback_job.py).

    Per shown list (request_id): CTR@k = share of lists with a clicked item in the top k; NDCG@k of
    the clicked items (binary gains at their positions, ideal = all clicks on top); conversion rate
    = share of lists with a converted item. Keys are "<arm> (<model_version>)".

    `shown` (request_id -> (arm, model_version)), the lists known to have been served, makes the
    denominators exact: a list with no sample yet (its unclicked rows are written only when the
    watermark passes the end of its window) counts as a list without a click.
    """
    lists: dict[str, dict[str, Any]] = {
        rid: {"group": f"{arm} ({version})", "clicked": set(), "converted": False}
        for rid, (arm, version) in (shown or {}).items()}
    for s in samples:
        entry = lists.setdefault(s["request_id"], {"group": f"{s['arm']} ({s['model_version']})",
                                                   "clicked": set(), "converted": False})
        if s["clicked"]:
            entry["clicked"].add(int(s["position"]))
        entry["converted"] = entry["converted"] or bool(s["converted"])
    by_group: dict[str, list[dict[str, Any]]] = {}
    for entry in lists.values():
        by_group.setdefault(entry["group"], []).append(entry)
    out = {}
    for group, entries in sorted(by_group.items()):
        ctr = ndcg = conv = 0.0
        for e in entries:
            top = sorted(p for p in e["clicked"] if p <= k)
            ctr += bool(top)
            conv += e["converted"]
            if top:
                dcg = sum(1 / math.log2(p + 1) for p in top)
                ideal = sum(1 / math.log2(r + 2) for r in range(len(top)))
                ndcg += dcg / ideal
        n = len(entries)
        out[group] = {"lists": n, f"ctr@{k}": round(ctr / n, 4), f"ndcg@{k}": round(ndcg / n, 4),
                      "conversion_rate": round(conv / n, 4)}
    return out
