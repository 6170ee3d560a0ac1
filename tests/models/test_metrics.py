"""Metric code cross-checked against ranx on the same rankings."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import hit_at_k, ndcg_at_k, rank_of_target, reciprocal_rank, summarize

ranx = pytest.importorskip("ranx")


def _ranx(target: np.ndarray, scores: np.ndarray, ids: np.ndarray, mask: np.ndarray | None = None) -> dict:
    qrels, run = {}, {}
    for q in range(scores.shape[0]):
        keep = np.ones(scores.shape[1], bool) if mask is None else mask[q]
        qrels[f"q{q}"] = {f"d{target[q]}": 1}
        run[f"q{q}"] = {f"d{d}": float(s) for d, s, k in zip(ids[q], scores[q], keep) if k}
    return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["ndcg@10", "hit_rate@10", "mrr"])


def test_sampled_protocol_matches_ranx() -> None:
    rng = np.random.default_rng(1)
    n, c = 300, 101
    scores = rng.normal(size=(n, c))  # column 0 = the true item, distinct scores (no ties)
    scores[:, 0] += rng.normal(1.5, 1.0, size=n)  # make it sometimes rank high
    ids = np.tile(np.arange(c), (n, 1))
    ranks = rank_of_target(scores[:, 0], scores[:, 1:])
    ours = summarize(ranks)
    ref = _ranx(np.zeros(n, int), scores, ids)
    assert ours["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-6)
    assert ours["hr@10"] == pytest.approx(ref["hit_rate@10"], abs=1e-6)
    assert ours["mrr"] == pytest.approx(ref["mrr"], abs=1e-6)


def test_full_protocol_with_history_mask_matches_ranx() -> None:
    rng = np.random.default_rng(2)
    n, c = 100, 400
    scores = rng.normal(size=(n, c))
    target = rng.integers(0, c, size=n)
    mask = rng.random((n, c)) > 0.2  # False = excluded (the user's history)
    mask[np.arange(n), target] = True
    ids = np.tile(np.arange(c), (n, 1))
    other = mask.copy()
    other[np.arange(n), target] = False
    ranks = rank_of_target(scores[np.arange(n), target], scores, other)
    ours = summarize(ranks)
    ref = _ranx(target, scores, ids, mask)
    assert ours["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-6)
    assert ours["hr@10"] == pytest.approx(ref["hit_rate@10"], abs=1e-6)
    assert ours["mrr"] == pytest.approx(ref["mrr"], abs=1e-6)


def test_hand_values_and_ties() -> None:
    ranks = np.array([0, 1, 9, 10])
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx([1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0])
    assert hit_at_k(ranks, 10).tolist() == [1, 1, 1, 0]
    assert reciprocal_rank(ranks).tolist() == pytest.approx([1, 0.5, 0.1, 1 / 11])
    # an all-equal scorer gets the worst rank, not the best
    assert rank_of_target(np.zeros(2), np.zeros((2, 5))).tolist() == [5, 5]
    assert summarize(ranks)["users"] == 4
