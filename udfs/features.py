"""Feature assembly: raw item/event ids of a batch of scoring rows -> the model's int64 tensors.

Vectorized over the whole Arrow batch (one `searchsorted` per column instead of a dict lookup per
item), because the pandas UDF sees up to `arrow.batch.size` rows at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

PAD = 0
OOV = 1


@dataclass(frozen=True)
class ModelInputs:
    hist_items: np.ndarray    # (B, T) int64, left-padded with PAD, most recent last; T <= max_len
    hist_events: np.ndarray   # (B, T) int64, left-padded with PAD
    candidates: np.ndarray    # (B, C) int64, right-padded with PAD up to the batch's longest list
    n_candidates: np.ndarray  # (B,) int64, real candidates per row


class Lookup:
    """Vectorized str -> index mapping; ids outside the vocabulary map to `default`."""

    def __init__(self, mapping: Mapping[str, int], default: int) -> None:
        keys = sorted(mapping)
        self._keys = np.array(keys, dtype=object).astype(str) if keys else np.array([], dtype=str)
        self._values = np.array([mapping[k] for k in keys], dtype=np.int64)
        self._default = default

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=str)
        if len(self._keys) == 0 or ids.size == 0:
            return np.full(ids.shape, self._default, dtype=np.int64)
        pos = np.searchsorted(self._keys, ids)
        pos = np.minimum(pos, len(self._keys) - 1)
        found = self._keys[pos] == ids
        return np.where(found, self._values[pos], self._default)


def _ragged(rows: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a ragged column: (all values concatenated, length of each row)."""
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.concatenate([np.asarray(r, dtype=str) for r in rows]) if lens.sum() else np.array([], dtype=str)
    return flat, lens


def _scatter_left(values: np.ndarray, lens: np.ndarray, width: int) -> np.ndarray:
    """Place each row's values right-aligned in a (B, width) PAD matrix (rows longer than width keep their tail)."""
    out = np.full((len(lens), width), PAD, dtype=np.int64)
    ends = np.cumsum(lens)
    for b, (end, n) in enumerate(zip(ends, lens)):
        take = min(int(n), width)
        if take:
            out[b, width - take:] = values[end - take:end]
    return out


def _scatter_right(values: np.ndarray, lens: np.ndarray, width: int) -> np.ndarray:
    out = np.full((len(lens), width), PAD, dtype=np.int64)
    mask = np.arange(width)[None, :] < lens[:, None]
    out[mask] = values
    return out


class FeatureEncoder:
    """Encodes scoring rows for one model vocabulary and history length.

    Histories are padded to the batch's longest history (at most `max_len`), not to `max_len`:
    the model counts positions from the most recent item, so padding changes no score, and a user
    with 3 events no longer pays for 200 positions of attention.
    """

    def __init__(self, item_to_index: Mapping[str, int], event_to_index: Mapping[str, int], max_len: int) -> None:
        self.items = Lookup(item_to_index, OOV)
        self.events = Lookup(event_to_index, PAD)
        self.max_len = max_len

    def encode(self, hist_items: Sequence[Sequence[str]], hist_events: Sequence[Sequence[str]],
               candidates: Sequence[Sequence[str]]) -> ModelInputs:
        h_flat, h_lens = _ragged(hist_items)
        e_flat, e_lens = _ragged(hist_events)
        if not np.array_equal(h_lens, e_lens):
            raise ValueError("hist_items and hist_events differ in length")
        c_flat, c_lens = _ragged(candidates)
        width = max(int(c_lens.max(initial=0)), 1)
        length = min(max(int(h_lens.max(initial=0)), 1), self.max_len)
        return ModelInputs(
            hist_items=_scatter_left(self.items(h_flat), h_lens, length),
            hist_events=_scatter_left(self.events(e_flat), e_lens, length),
            candidates=_scatter_right(self.items(c_flat), c_lens, width),
            n_candidates=c_lens,
        )
