"""Content on the request path: new items scored by their text, reasons, and the MMR knob.

Pure numpy (no Flink, no onnxruntime), used by the scoring operator (udfs/rerank.py) and by the
offline cold-item protocol (models/cold.py), so a cold item is scored the same way in both:

- ``TextProjection``: a content-aware model's ``text_projection.npz`` (models/artifact.py). An
  item outside the model's vocabulary that has a language-model embedding ``t`` is the vector
  ``weight @ t + bias``: exactly what the model was trained to use when an item's ID row is dropped
  (models/sasrec.py, ``id_dropout``).
- ``score_new_items``: ``user_state @ that vector`` for such items; the graph already scored every
  known item as ``user_state @ table[item]``, so the two kinds of score are on one scale.
- ``explain``: one reason per shown item, vectorized over the list: "new" (scored by content
  alone), "similar" (the history item nearest in the language-model space, above a floor),
  "trending" (placed by the trend part of the blend, udfs/trending.py), else "personalized".
- ``present``: what the scoring operator calls per request, after the model: fill in new items,
  blend with the trend, order the list (by score, or MMR), attach the reasons.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from udfs.explain import NO_HISTORY, mmr_order, nearest_history

if TYPE_CHECKING:
    from udfs.embeddings import EmbeddingTable
    from udfs.trending import Blend

log = logging.getLogger(__name__)

TEXT_PROJECTION_FILE = "text_projection.npz"  # models/artifact.py names the same file
REASON_NEW = "new"
REASON_SIMILAR = "similar"
REASON_TRENDING = "trending"
REASON_PERSONAL = "personalized"


@dataclass(frozen=True)
class TextProjection:
    """weight (D, T) and bias (D,) float32 of a content-aware model, and the encoder its T-dim input comes from."""

    weight: np.ndarray
    bias: np.ndarray
    encoder: str

    @property
    def text_dim(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def load(cls, model_dir: str | Path, config: dict[str, Any]) -> "TextProjection | None":
        """The projection of a model directory; None for an ID-only model (no ``text`` in its config)."""
        text = config.get("text")
        if not text:
            return None
        with np.load(Path(model_dir) / text.get("file", TEXT_PROJECTION_FILE)) as npz:
            weight = np.asarray(npz["weight"], np.float32)
            bias = np.asarray(npz["bias"], np.float32)
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or weight.shape[1] != int(text["dim"]):
            raise ValueError(f"{model_dir}: text projection {weight.shape} / {bias.shape} does not match "
                             f"text dim {text['dim']}")
        return cls(weight, bias, str(text["model"]))

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(N, T) text embeddings -> (N, D) item vectors in the model's space."""
        return vectors @ self.weight.T + self.bias


def score_new_items(state: np.ndarray, projection: TextProjection, vectors: np.ndarray) -> np.ndarray:
    """Scores (N,) of N items outside the vocabulary from their (N, T) text embeddings, for one user_state (D,)."""
    return (projection.project(vectors) @ state).astype(np.float32)


def fill_new_items(scores: np.ndarray, state: np.ndarray | None, projection: TextProjection | None,
                   is_oov: np.ndarray, vectors: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace the scores of out-of-vocabulary candidates that have a text embedding.

    scores (C,) from the graph; is_oov, found (C,) bool; vectors (C, T). Returns (scores (C,),
    by_content (C,) bool: the candidates now scored by content). Unchanged when the model is ID-only
    (no projection or no state).
    """
    by_content = is_oov & found
    if projection is None or state is None or not by_content.any():
        return scores, np.zeros_like(is_oov)
    out = np.array(scores, dtype=np.float32, copy=True)
    out[by_content] = score_new_items(state, projection, vectors[by_content])
    return out, by_content


def explain(shown_ids: Sequence[str], shown_vectors: np.ndarray, shown_found: np.ndarray, new: np.ndarray,
            history_ids: Sequence[str], history_vectors: np.ndarray, history_found: np.ndarray,
            trending: np.ndarray | None = None, min_similarity: float = 0.5,
            titles: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One reason per shown item, in the order shown.

    shown_vectors (K, T) with shown_found (K,) and new (K,) bool; history_vectors (H, T) with
    history_found (H,) (most recent last); trending (K,) bool or None. A reason is
    ``{"kind": ..., "text": ...}`` plus ``because`` (a history item id) and ``similarity`` for
    "similar" (and for "new" when a history item is close). Precedence: new, then similar, then
    trending, then personalized.
    """
    k = len(shown_ids)
    if shown_vectors.shape[0] != k:
        raise ValueError(f"{k} shown items but {shown_vectors.shape[0]} vectors")
    hist_ids = np.asarray(list(history_ids), dtype=object)
    index, sim = nearest_history(history_vectors, shown_vectors, history_mask=np.asarray(history_found, bool),
                                 history_ids=hist_ids, candidate_ids=np.asarray(list(shown_ids), dtype=object))
    close = (index != NO_HISTORY) & np.asarray(shown_found, bool) & (np.nan_to_num(sim, nan=-1.0) >= min_similarity)
    titles = titles or {}
    trending = np.zeros(k, bool) if trending is None else np.asarray(trending, bool)
    out: list[dict[str, Any]] = []
    for j in range(k):
        because = str(hist_ids[index[j]]) if close[j] else None
        if new[j]:
            reason = {"kind": REASON_NEW, "text": "new"}
            if because is not None:
                reason.update(because=because, similarity=round(float(sim[j]), 3),
                              text=f"new, like {titles.get(because, because)}")
        elif because is not None:
            reason = {"kind": REASON_SIMILAR, "because": because, "similarity": round(float(sim[j]), 3),
                      "text": f"because you watched {titles.get(because, because)}"}
        elif trending[j]:
            reason = {"kind": REASON_TRENDING, "text": "trending"}
        else:
            reason = {"kind": REASON_PERSONAL, "text": "picked for you"}
        out.append(reason)
    return out


def diversified_order(scores: np.ndarray, vectors: np.ndarray, k: int | None, lam: float) -> np.ndarray:
    """The shown order: by score (stable) when lam >= 1, else MMR over the text embeddings (udfs/explain.py)."""
    if lam >= 1.0:
        order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
        return order if k is None else order[:k]
    return mmr_order(np.asarray(scores, np.float64), vectors, k, lam)


@dataclass(frozen=True)
class Presented:
    """One request's list after the model: what `udfs.ranking.ranked_list` emits."""

    scores: np.ndarray             # (C,) float32: the model's, new items' replaced by their content score
    order: np.ndarray              # (K,) int64 indices into the candidates, in the order shown
    reasons: list[dict[str, Any]] | None  # (K,) aligned with order; None when explanations are off
    by_content: np.ndarray         # (C,) bool: scored from text (outside the vocabulary, with an embedding)
    trend_weight: float | None = None  # the trend's share of the blended scores; None: not blended


@dataclass(frozen=True)
class PresentSettings:
    """How a list is presented: the request-path knobs of jobs.config.JobConfig."""

    explain: bool = True          # attach a reason to every shown item
    diversity_lambda: float = 1.0  # MMR trade-off over the text embeddings; 1 = the model's order
    min_similarity: float = 0.5    # "because you watched X" only above this cosine similarity

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity_lambda <= 1.0:
            raise ValueError(f"diversity_lambda must be in [0, 1], got {self.diversity_lambda}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {self.min_similarity}")


def present(candidates: Sequence[str], scores: np.ndarray, is_oov: np.ndarray, state: np.ndarray | None,
            projection: TextProjection | None, table: "EmbeddingTable | None", history_items: Sequence[str],
            k: int | None, settings: PresentSettings, blend: "Blend | None" = None) -> Presented:
    """Scores (C,) and is_oov (C,) of one request's candidates -> the list as shown.

    `blend` (udfs/trending.py): the candidates' trend counts and the blend of the user's history;
    applied after new items are filled in, before the order, so MMR and the reasons see the
    blended scores; items placed by the trend get the "trending" reason.

    Without a table (or an empty one) this is the plain top-k by score with "new"/"personalized"
    reasons: the item-embeddings topic is optional. Only the shown items' reasons are computed
    (K x H similarities, H <= the model's history length); MMR needs every candidate's vector.
    """
    c = len(candidates)
    scores = np.asarray(scores, np.float32)
    is_oov = np.asarray(is_oov, bool)
    if scores.shape != (c,) or is_oov.shape != (c,):
        raise ValueError(f"{c} candidates but scores {scores.shape} / is_oov {is_oov.shape}")
    n = c if k is None else min(k, c)
    usable = table is not None and len(table) > 0
    need_all = usable and ((projection is not None and state is not None and is_oov.any())
                           or settings.diversity_lambda < 1.0)
    by_content = np.zeros(c, bool)
    if need_all:
        vectors, found = table.lookup(candidates)  # (C, T), (C,)
        scores, by_content = fill_new_items(scores, state, projection, is_oov, vectors, found)
    else:
        vectors = found = None
    trending, trend_weight = None, None
    if blend is not None:
        scores, trending, trend_weight = blend.apply(scores)
    if need_all:
        order = diversified_order(scores, vectors, n, settings.diversity_lambda)
    else:
        order = np.argsort(-scores.astype(np.float64), kind="stable")[:n]
    if not settings.explain:
        return Presented(scores, order, None, by_content, trend_weight)
    shown = [candidates[i] for i in order]
    compared: Sequence[str] = history_items if usable else ()
    if len(compared):
        if vectors is None:
            shown_vectors, shown_found = table.lookup(shown)
        else:
            shown_vectors, shown_found = vectors[order], found[order]
        hist_vectors, hist_found = table.lookup(compared)
    else:  # nothing to compare: no history item can be "similar"
        shown_vectors, shown_found = np.zeros((n, 1), np.float32), np.zeros(n, bool)
        hist_vectors, hist_found = np.zeros((0, 1), np.float32), np.zeros(0, bool)
    reasons = explain(shown, shown_vectors, shown_found, is_oov[order], compared, hist_vectors, hist_found,
                      trending=None if trending is None else trending[order],
                      min_similarity=settings.min_similarity)
    for reason, i in zip(reasons, order):
        if by_content[i]:
            reason["by_content"] = True
    return Presented(scores, order, reasons, by_content, trend_weight)
