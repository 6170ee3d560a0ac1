from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelError
from models.protocols import EvalTask, evaluate_protocols, ranks_full, sample_negatives


def _task(n_items: int = 130) -> EvalTask:
    hist = [np.array([2, 3, 4]), np.array([5, 6])]
    return EvalTask(histories=hist, events=[np.full(len(h), 5) for h in hist], targets=np.array([7, 8]),
                    interacted=[np.array([2, 3, 4, 7]), np.array([5, 6, 8])], n_items=n_items)


def test_negatives_exclude_interacted_no_duplicates_and_fixed_seed() -> None:
    task = _task()
    weights = np.arange(task.n_items, dtype=float)
    for w in (None, weights):
        neg = sample_negatives(task, seed=3, weights=w)
        assert neg.shape == (2, 100)
        for row, seen in zip(neg, task.interacted):
            assert len(set(row)) == 100 and not set(row) & set(seen) and row.min() >= 2
        assert np.array_equal(neg, sample_negatives(task, seed=3, weights=w))


def test_full_ranking_excludes_history() -> None:
    task = _task(n_items=12)

    def score(items, events, cands):  # higher index = higher score; history items 2..6 would outrank nothing
        return cands.astype(np.float32)

    # target 7 among {7..11} minus history: items 8..11 beat it -> rank 4; target 8: 9..11 -> rank 3
    assert ranks_full(score, task, max_len=5).tolist() == [4, 3]


def test_errors() -> None:
    with pytest.raises(ModelError, match="cannot sample"):
        sample_negatives(_task(n_items=50), seed=0)
    with pytest.raises(ModelError, match="unknown protocol"):
        evaluate_protocols(lambda i, e, c: c.astype(np.float32), _task(), 5, np.ones(130), protocols=["top5"])
