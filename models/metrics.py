"""Ranking metrics for one relevant item per user (leave-one-out).

All functions take 0-based ranks of the true item among its candidates.
Ties count against the true item (an all-equal scorer gets the worst rank),
so a degenerate model cannot look good.
"""

from __future__ import annotations

import numpy as np


def rank_of_target(target_scores: np.ndarray, other_scores: np.ndarray, other_mask: np.ndarray | None = None) -> np.ndarray:
    """0-based rank of each target among the other candidates.

    target_scores: (N,); other_scores: (N, C); other_mask: (N, C) bool, False
    entries are ignored (e.g. the user's history, or the target itself).
    Returns (N,) int64 = number of counted candidates scoring >= the target.
    """
    beats = other_scores >= target_scores[:, None]
    if other_mask is not None:
        beats &= other_mask
    return beats.sum(axis=1).astype(np.int64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k with a single relevant item: 1/log2(rank+2) inside the cut-off."""
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def hit_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    return (np.asarray(ranks) < k).astype(np.float64)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """Per-user reciprocal rank (no cut-off)."""
    return 1.0 / (np.asarray(ranks) + 1.0)


def summarize(ranks: np.ndarray, k: int = 10) -> dict[str, float | int]:
    """Mean metrics over users: ``{"ndcg@k", "hr@k", "mrr", "users"}``."""
    ranks = np.asarray(ranks)
    return {
        f"ndcg@{k}": round(float(ndcg_at_k(ranks, k).mean()), 6),
        f"hr@{k}": round(float(hit_at_k(ranks, k).mean()), 6),
        "mrr": round(float(reciprocal_rank(ranks).mean()), 6),
        "users": int(ranks.size),
    }
