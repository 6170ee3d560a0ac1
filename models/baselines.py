"""Non-neural baselines on the same split and through the same protocol code.

* most-popular: score = interaction count;
* item-kNN: cosine item-item similarity from user co-occurrence, a user's
  score for an item = sum of similarities to every item in their history.

Both are fitted on every user's sequence without its test item (the same
information the sequential model sees as history at test time).
"""

from __future__ import annotations

import numpy as np

from models.artifact import FIRST_ITEM_INDEX
from models.protocols import Scorer


def fit_popularity(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(n_items,) float32 counts; pad/OOV rows are 0."""
    counts = np.bincount(np.concatenate(histories), minlength=n_items).astype(np.float32)
    counts[:FIRST_ITEM_INDEX] = 0.0
    return counts


def popularity_scorer(counts: np.ndarray) -> Scorer:
    def score(items: np.ndarray, events: np.ndarray, cands: np.ndarray) -> np.ndarray:
        return counts[cands]  # (B, C)

    return score


def fit_item_knn(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(n_items, n_items) float32 cosine similarity with a zero diagonal."""
    x = np.zeros((len(histories), n_items), dtype=np.float32)  # (U, I) binary user-item matrix
    for u, h in enumerate(histories):
        x[u, h] = 1.0
    x[:, :FIRST_ITEM_INDEX] = 0.0
    co = x.T @ x  # (I, I) co-occurrence counts
    norm = np.sqrt(np.diag(co)).copy()
    norm[norm == 0] = 1.0
    sim = co / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    return sim.astype(np.float32)


def item_knn_scorer(sim: np.ndarray) -> Scorer:
    n_items = sim.shape[0]

    def score(items: np.ndarray, events: np.ndarray, cands: np.ndarray) -> np.ndarray:
        x = np.zeros((items.shape[0], n_items), dtype=np.float32)  # (B, I)
        np.put_along_axis(x, items, 1.0, axis=1)
        x[:, :FIRST_ITEM_INDEX] = 0.0  # padding / OOV carry no evidence
        return np.take_along_axis(x @ sim, cands, axis=1)  # (B, C)

    return score
