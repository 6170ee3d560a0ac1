"""Explanation and diversity building blocks (udfs/explain.py): pure, vectorized."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.explain import NO_HISTORY, intra_list_diversity, mmr_order, nearest_history


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def test_nearest_history_picks_the_most_similar():
    history = unit(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32))
    candidates = unit(np.array([[0.9, 0.1, 0], [0, 0.2, 1], [0.1, 1, 0.1]], np.float32))
    index, sim = nearest_history(history, candidates)
    assert index.tolist() == [0, 2, 1]
    np.testing.assert_allclose(sim, (candidates * history[index]).sum(axis=1), rtol=1e-6)


def test_nearest_history_batch_equals_loop_with_masks_and_ids():
    rng = np.random.default_rng(0)
    B, H, C, D = 4, 7, 5, 16
    history, candidates = unit(rng.standard_normal((B, H, D))), unit(rng.standard_normal((B, C, D)))
    mask = rng.random((B, H)) < 0.7
    mask[1] = False  # a user without history
    history_ids = rng.integers(0, 10, (B, H))
    candidate_ids = rng.integers(0, 10, (B, C))
    index, sim = nearest_history(history, candidates, mask, history_ids, candidate_ids)
    assert index.shape == sim.shape == (B, C)
    for b in range(B):
        for c in range(C):
            ok = [h for h in range(H) if mask[b, h] and history_ids[b, h] != candidate_ids[b, c]]
            if not ok:
                assert index[b, c] == NO_HISTORY and np.isnan(sim[b, c])
                continue
            sims = [float(candidates[b, c] @ history[b, h]) for h in ok]
            assert index[b, c] == ok[int(np.argmax(sims))]
            assert sim[b, c] == pytest.approx(max(sims), abs=1e-6)
    assert (index[1] == NO_HISTORY).all()


def test_an_item_does_not_explain_itself():
    history = unit(np.array([[1, 0], [0.6, 0.8]], np.float32))
    index, _ = nearest_history(history, history[:1], history_ids=np.array([5, 6]), candidate_ids=np.array([5]))
    assert index.tolist() == [1]


def test_nearest_history_shape_errors_and_empty_history():
    with pytest.raises(ValueError, match="disagree"):
        nearest_history(np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 5), np.float32))
    index, sim = nearest_history(np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32))
    assert index.tolist() == [NO_HISTORY] * 3 and np.isnan(sim).all()


def test_mmr_lambda_one_is_the_score_order():
    rng = np.random.default_rng(1)
    scores = np.array([0.3, 2.0, 2.0, -1.0, 0.5])
    order = mmr_order(scores, unit(rng.standard_normal((5, 8))), lam=1.0)
    assert order.tolist() == [1, 2, 4, 0, 3]  # descending, ties in request order


def test_mmr_low_lambda_skips_near_duplicates():
    # Items 0 and 1 are the same movie twice; 2 is different and slightly less relevant.
    emb = unit(np.array([[1, 0.01], [1, 0], [0, 1]], np.float32))
    scores = np.array([1.0, 0.95, 0.9])
    assert mmr_order(scores, emb, k=2, lam=1.0).tolist() == [0, 1]
    assert mmr_order(scores, emb, k=2, lam=0.5).tolist() == [0, 2]
    ild_relevance = intra_list_diversity(emb[mmr_order(scores, emb, k=2, lam=1.0)])
    ild_mmr = intra_list_diversity(emb[mmr_order(scores, emb, k=2, lam=0.5)])
    assert ild_mmr > ild_relevance


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(0, 35), lam=st.floats(0, 1), seed=st.integers(0, 1000))
def test_mmr_is_a_permutation_prefix(n, k, lam, seed):
    rng = np.random.default_rng(seed)
    order = mmr_order(rng.standard_normal(n), unit(rng.standard_normal((n, 6))), k=k, lam=lam)
    assert len(order) == min(k, n) and len(set(order.tolist())) == len(order)
    assert all(0 <= i < n for i in order)


def test_mmr_rejects_bad_input():
    with pytest.raises(ValueError, match="lam"):
        mmr_order(np.zeros(2), np.zeros((2, 3)), lam=1.5)
    with pytest.raises(ValueError, match="2 scores but 3"):
        mmr_order(np.zeros(2), np.zeros((3, 3)))


def test_intra_list_diversity():
    same = unit(np.ones((3, 4), np.float32))
    assert intra_list_diversity(same) == pytest.approx(0.0, abs=1e-6)
    orthogonal = np.eye(3, dtype=np.float32)
    assert intra_list_diversity(orthogonal) == pytest.approx(1.0)
    assert intra_list_diversity(orthogonal[:1]) == 0.0
