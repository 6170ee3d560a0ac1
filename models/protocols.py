"""Leave-one-out evaluation protocols, independent of what does the scoring.

A scorer is any ``(hist_items (B, L), hist_events (B, L), candidates (B, C))
-> scores (B, C)`` callable on int64 numpy arrays — the ONNX session, the
eager model, or a baseline — so every number in metrics.json comes out of the
same code path.

* ``uniform100``: the true item among 100 negatives drawn uniformly from the
  items the user never interacted with;
* ``pop100``: the same, negatives drawn proportionally to popularity;
* ``full``: against every known item, the user's history excluded.

Two test splits: leave-one-out (``make_task``: each user's last event) and the global time cut
(``time_cut_task``: each user's first event after ``--train-until``, from the pre-cut history).

A catalogue too small for 100 never-seen items per user (a toy log) samples as many as every
evaluated user has (``negatives`` in that protocol's result says how many); ML-1M-sized data
always gets 100.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from models.artifact import FIRST_ITEM_INDEX, OOV_INDEX, left_pad
from models.split import Split
from models.errors import ModelError
from models.eventlog import EventLog
from models.metrics import rank_of_target, summarize

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
PROTOCOLS = ("uniform100", "pop100", "full")
N_SAMPLED_NEGATIVES = 100
DEFAULT_SEED = 20240601


@dataclass(frozen=True)
class EvalTask:
    """One prediction per evaluated user: history -> target (item indices)."""

    histories: list[np.ndarray]
    events: list[np.ndarray]
    targets: np.ndarray  # (E,) int64
    interacted: list[np.ndarray]  # everything the user ever touched (excluded from sampled negatives)
    n_items: int


def make_task(split: Split, stage: str) -> EvalTask:
    """``stage="valid"``: predict seq[-2] from seq[:-2]; ``"test"``: seq[-1] from seq[:-1]."""
    cut = {"valid": 2, "test": 1}[stage]
    users = split.eval_users
    return EvalTask(
        histories=[split.seqs[u][:-cut] for u in users],
        events=[split.events[u][:-cut] for u in users],
        targets=np.array([split.seqs[u][-cut] for u in users], dtype=np.int64),
        interacted=[split.seqs[u] for u in users],
        n_items=split.n_items,
    )


def time_cut_task(split: Split, before: EventLog, after: EventLog, item_to_index: Mapping[str, int],
                  event_to_index: Mapping[str, int]) -> tuple[EvalTask, int]:
    """The global time-cut test: each user's first event after the cut, from their whole pre-cut history.

    ``split`` is the leave-one-out split of ``before`` (the training data, in the same user order).
    Users without pre-cut history, or whose next item is unknown to the model (first seen after the
    cut: no score can rank it), are left out; the second value counts the latter.
    """
    index_of = {str(u): i for i, u in enumerate(before.users)}
    first_after = {}
    for u in range(after.n_users):
        b = index_of.get(str(after.users[u]))
        if b is not None:
            first_after[b] = int(after.items[after.offsets[u]])  # after is ts-ordered per user
    users, targets, unknown = [], [], 0
    for b in sorted(first_after):
        target = item_to_index.get(str(after.item_ids[first_after[b]]), OOV_INDEX)
        if target == OOV_INDEX:
            unknown += 1
            continue
        users.append(b)
        targets.append(target)
    if not users:
        raise ModelError("time split: no user with pre-cut history has a known item after the cut")
    return EvalTask(
        histories=[split.seqs[u] for u in users],
        events=[split.events[u] for u in users],
        targets=np.array(targets, dtype=np.int64),
        interacted=[np.append(split.seqs[u], t) for u, t in zip(users, targets)],
        n_items=split.n_items,
    ), unknown


def item_popularity(split: Split) -> np.ndarray:
    """(n_items,) interaction counts over all sequences (the pop100 sampling weights)."""
    return np.bincount(np.concatenate(split.seqs), minlength=split.n_items).astype(np.float64)


def fewest_never_seen(task: EvalTask, weights: np.ndarray | None = None) -> int:
    """The smallest number of items (with non-zero weight, if given) any evaluated user never touched."""
    known = np.arange(FIRST_ITEM_INDEX, task.n_items)
    if weights is not None:
        known = known[weights[known] > 0]
    return min((len(np.setdiff1d(known, seen)) for seen in task.interacted), default=0)


def sample_negatives(task: EvalTask, seed: int, weights: np.ndarray | None = None,
                     n: int = N_SAMPLED_NEGATIVES) -> np.ndarray:
    """(E, n) negatives per user, without replacement, from items the user never interacted with."""
    rng = np.random.default_rng(seed)
    known = np.arange(FIRST_ITEM_INDEX, task.n_items)
    out = np.empty((len(task.targets), n), dtype=np.int64)
    for i, seen in enumerate(task.interacted):
        pool = np.setdiff1d(known, seen, assume_unique=False)
        if len(pool) < n:
            raise ModelError(f"user {i}: only {len(pool)} never-seen items, cannot sample {n} negatives")
        p = None
        if weights is not None:
            w = weights[pool]
            p = w / w.sum()
        out[i] = rng.choice(pool, size=n, replace=False, p=p)
    return out


def _batches(n: int, size: int) -> Iterable[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def _pad_batch(task: EvalTask, idx: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    length = max(1, min(max_len, max(len(task.histories[i]) for i in idx)))
    items = left_pad([task.histories[i] for i in idx], length)  # (B, L)
    events = left_pad([task.events[i] for i in idx], length)  # (B, L)
    return items, events


def ranks_sampled(scorer: Scorer, task: EvalTask, negatives: np.ndarray, max_len: int,
                  batch_size: int = 256) -> np.ndarray:
    """(E,) rank of the target among [target, negatives...]."""
    ranks = np.empty(len(task.targets), dtype=np.int64)
    for idx in _batches(len(task.targets), batch_size):
        items, events = _pad_batch(task, idx, max_len)
        cands = np.concatenate([task.targets[idx, None], negatives[idx]], axis=1)  # (B, 1 + n)
        scores = np.asarray(scorer(items, events, cands), dtype=np.float64)  # (B, 1 + n)
        ranks[idx] = rank_of_target(scores[:, 0], scores[:, 1:])
    return ranks


def ranks_full(scorer: Scorer, task: EvalTask, max_len: int, batch_size: int = 128) -> np.ndarray:
    """(E,) rank of the target among all known items, history excluded."""
    all_items = np.arange(FIRST_ITEM_INDEX, task.n_items, dtype=np.int64)
    ranks = np.empty(len(task.targets), dtype=np.int64)
    for idx in _batches(len(task.targets), batch_size):
        items, events = _pad_batch(task, idx, max_len)
        cands = np.broadcast_to(all_items, (len(idx), len(all_items)))  # (B, I)
        scores = np.asarray(scorer(items, events, np.ascontiguousarray(cands)), dtype=np.float64)  # (B, I)
        rows = np.arange(len(idx))
        col = task.targets[idx] - FIRST_ITEM_INDEX
        mask = np.ones_like(scores, dtype=bool)
        for r, i in enumerate(idx):
            # Whole history excluded (not just the last max_len): already-seen items are not recommendations.
            mask[r, task.histories[i][task.histories[i] >= FIRST_ITEM_INDEX] - FIRST_ITEM_INDEX] = False
        mask[rows, col] = False
        ranks[idx] = rank_of_target(scores[rows, col], scores, mask)
    return ranks


def evaluate_protocols(scorer: Scorer, task: EvalTask, max_len: int, popularity: np.ndarray,
                       protocols: Iterable[str] = PROTOCOLS, seed: int = DEFAULT_SEED) -> dict[str, dict]:
    """Run the named protocols; negatives are a function of (seed, protocol) only, so runs are comparable."""
    out: dict[str, dict] = {}
    for name in protocols:
        n = N_SAMPLED_NEGATIVES
        if name in ("uniform100", "pop100"):
            weights = popularity if name == "pop100" else None
            n = min(n, fewest_never_seen(task, weights))
            if n < 1:
                raise ModelError(f"{name}: some user interacted with every item; no negatives to sample")
            if n < N_SAMPLED_NEGATIVES:
                log.warning("%s: catalogue too small for %d negatives per user, sampling %d", name,
                            N_SAMPLED_NEGATIVES, n)
        if name == "uniform100":
            ranks = ranks_sampled(scorer, task, sample_negatives(task, seed, n=n), max_len)
        elif name == "pop100":
            ranks = ranks_sampled(scorer, task, sample_negatives(task, seed + 1, popularity, n=n), max_len)
        elif name == "full":
            ranks = ranks_full(scorer, task, max_len)
        else:
            raise ModelError(f"unknown protocol {name!r}; expected one of {PROTOCOLS}")
        out[name] = summarize(ranks)
        if n < N_SAMPLED_NEGATIVES:
            out[name]["negatives"] = n
        log.info("%s: %s", name, out[name])
    return out
