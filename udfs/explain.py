"""Explanations and diversity from the item text embeddings: pure, vectorized building blocks.

- ``nearest_history``: for each candidate, the history item most similar to it in the language-
  model space and that similarity ("because you watched *Heat*"), for a whole scoring batch in one
  matrix product.
- ``mmr_order``: Maximal Marginal Relevance re-ranking of one list over the text embeddings,
  λ * relevance - (1 - λ) * (max similarity to what is already picked); λ = 1 keeps the model's
  order, lower λ trades relevance for diversity.
- ``intra_list_diversity``: 1 - mean pairwise cosine similarity of a list (the usual ILD).

Embeddings are the unit vectors of `item-embeddings` (udfs/embeddings.py), so a dot product is the
cosine similarity; an item without an embedding is a zero row (similarity 0 to everything).
Served through udfs/content.py (``present``), which the scoring operator calls per request.
"""
from __future__ import annotations

import numpy as np

NO_HISTORY = -1  # nearest_history's index where a candidate has no usable history item


def nearest_history(history: np.ndarray, candidates: np.ndarray, history_mask: np.ndarray | None = None,
                    history_ids: np.ndarray | None = None,
                    candidate_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate, the most similar history item.

    history: (B, H, D) or (H, D) float32; candidates: (B, C, D) or (C, D); history_mask: (B, H)
    bool, True for real (not padding) history rows. With history_ids (B, H) and candidate_ids
    (B, C), a history item equal to the candidate is skipped (an item does not explain itself).

    Returns (index (B, C) int64 into H, NO_HISTORY where none is usable; similarity (B, C)
    float32, NaN there). Shapes without B in, without B out.
    """
    single = history.ndim == 2
    if single:
        history, candidates = history[None], candidates[None]
        history_mask = None if history_mask is None else history_mask[None]
        history_ids = None if history_ids is None else history_ids[None]
        candidate_ids = None if candidate_ids is None else candidate_ids[None]
    if history.shape[0] != candidates.shape[0] or history.shape[2] != candidates.shape[2]:
        raise ValueError(f"history {history.shape} and candidates {candidates.shape} disagree on B or D")
    # A batched BLAS product; einsum's path search alone cost ~70 µs per list.
    sims = np.matmul(candidates, history.transpose(0, 2, 1)).astype(np.float32, copy=False)  # (B, C, H)
    usable = np.ones(sims.shape, dtype=bool)
    if history_mask is not None:
        usable &= history_mask[:, None, :]
    if history_ids is not None and candidate_ids is not None:
        usable &= candidate_ids[:, :, None] != history_ids[:, None, :]
    sims = np.where(usable, sims, -np.inf)
    index = sims.argmax(axis=2) if sims.shape[2] else np.zeros(sims.shape[:2], np.int64)  # (B, C)
    best = np.take_along_axis(sims, index[:, :, None], axis=2)[:, :, 0] if sims.shape[2] else \
        np.full(sims.shape[:2], -np.inf, np.float32)
    none = ~np.isfinite(best)
    index = np.where(none, NO_HISTORY, index).astype(np.int64)
    best = np.where(none, np.nan, best).astype(np.float32)
    return (index[0], best[0]) if single else (index, best)


def mmr_order(scores: np.ndarray, embeddings: np.ndarray, k: int | None = None, lam: float = 0.7) -> np.ndarray:
    """MMR over one list: indices of the picked items in order, (min(k, C),) int64.

    scores (C,) are the model's relevance scores, min-max scaled to [0, 1] inside (their scale is
    arbitrary; the similarity term is in [-1, 1]); embeddings (C, D) unit rows. The first pick is
    always the top-scored item; each next one maximizes lam * relevance - (1 - lam) * max cosine
    similarity to the items picked so far. Ties go to the earlier index (so lam = 1 is the stable
    descending order of scores).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    n = scores.shape[0]
    if embeddings.shape[0] != n:
        raise ValueError(f"{n} scores but {embeddings.shape[0]} embeddings")
    k = n if k is None else min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    span = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / span if span > 0 else np.zeros(n, np.float64)
    sims = embeddings @ embeddings.T  # (C, C)
    picked = np.zeros(n, dtype=bool)
    max_sim = np.full(n, -np.inf)  # to the picked set; -inf before the first pick
    order = np.empty(k, np.int64)
    for step in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(picked, -np.inf, lam * relevance - (1.0 - lam) * penalty)
        if step == 0:
            value = np.where(picked, -np.inf, relevance)
        i = int(np.argmax(value))  # first maximum: ties to the earlier index
        order[step] = i
        picked[i] = True
        max_sim = np.maximum(max_sim, sims[i])
    return order


def intra_list_diversity(embeddings: np.ndarray) -> float:
    """1 - mean pairwise cosine similarity of a list's (k, D) unit embeddings; 0.0 for fewer than 2 items."""
    k = embeddings.shape[0]
    if k < 2:
        return 0.0
    sims = embeddings @ embeddings.T
    mean_pair = (float(sims.sum()) - float(np.trace(sims))) / (k * (k - 1))
    return 1.0 - mean_pair
