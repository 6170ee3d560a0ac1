"""Vocabulary and the leave-one-out split of an ``EventLog``, in model indices.

Vocabulary (``vocab.json``, see ``models.artifact``), deterministic for the same data whatever
the input order:

* items: every item id that occurs in the (cut) log, ordered by ``item_order_key``: ids that are
  canonical non-negative decimal integers first, by value, then every other id by code point.
  Index 2 is the first; 0 = padding, 1 = out-of-vocabulary.
* events: the contract's names at their fixed indices (``EVENT_TYPES``: view 1 ... rate 5, so an
  artifact serves any contract event, and types absent from training are tied to the mean of
  the trained ones at export), then any other event name in the log, by code point, from 6.
* titles: from the catalog, when one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.artifact import EVENT_TYPES, FIRST_ITEM_INDEX, OOV_INDEX, PAD_INDEX
from models.eventlog import Catalog, EventLog


LEAVE_ONE_OUT, TIME_SPLIT = "leave-one-out", "time"
TEST_SPLITS = (LEAVE_ONE_OUT, TIME_SPLIT)  # --test-split; validation is always leave-one-out


def item_order_key(item_id: str) -> tuple[int, int, str]:
    """Sort key of the item vocabulary: decimal integers numerically (``"2" < "10"``), then strings."""
    if item_id.isascii() and item_id.isdigit() and (item_id == "0" or not item_id.startswith("0")):
        return (0, int(item_id), "")
    return (1, 0, item_id)


def event_vocab(names: np.ndarray | list[str]) -> dict[str, int]:
    """The contract's event names at their indices, then the data's other names from 6 on."""
    extra = sorted(set(map(str, names)) - set(EVENT_TYPES))
    return {**EVENT_TYPES, **{n: len(EVENT_TYPES) + 1 + i for i, n in enumerate(extra)}}


def build_vocab(log: EventLog, catalog: Catalog | None = None) -> dict:
    """The ``vocab.json`` dict for a log (items that occur in it only) and an optional catalog."""
    seen = sorted((str(log.item_ids[c]) for c in np.unique(log.items)), key=item_order_key)
    return {
        "pad": PAD_INDEX,
        "oov": OOV_INDEX,
        "items": {ext: FIRST_ITEM_INDEX + i for i, ext in enumerate(seen)},
        "titles": dict(catalog.titles) if catalog is not None else {},
        "events": event_vocab(log.event_names[np.unique(log.events)]),
    }


@dataclass(frozen=True)
class Split:
    """Leave-one-out split in model indices.

    ``train[u]`` are user u's items without the last two (the whole sequence if
    the user has fewer than 3). ``eval_users`` index users with >= 3 items;
    validation predicts ``seq[-2]`` from ``seq[:-2]``, test predicts ``seq[-1]``
    from ``seq[:-1]``.
    """

    seqs: list[np.ndarray]  # per user, full sequence of item indices (int64)
    events: list[np.ndarray]  # per user, event indices aligned with seqs
    train: list[np.ndarray]
    train_events: list[np.ndarray]
    eval_users: np.ndarray  # (E,) int64
    n_items: int  # embedding rows: known items + pad + oov


def leave_one_out(log: EventLog, item_to_index: Mapping[str, int],
                  event_to_index: Mapping[str, int] = EVENT_TYPES) -> Split:
    """Split every user's ordered sequence: last = test, second-to-last = validation.

    Items missing from ``item_to_index`` become OOV and event names missing from
    ``event_to_index`` padding (what the job does with them).
    """
    item_lookup = np.array([item_to_index.get(str(i), OOV_INDEX) for i in log.item_ids], dtype=np.int64)
    event_lookup = np.array([event_to_index.get(str(e), PAD_INDEX) for e in log.event_names], dtype=np.int64)
    indexed, ev_indexed = item_lookup[log.items], event_lookup[log.events]
    seqs, events, train, train_events, eval_users = [], [], [], [], []
    for u in range(log.n_users):
        s = log.user_slice(u)
        seq, ev = indexed[s], ev_indexed[s]
        seqs.append(seq)
        events.append(ev)
        if len(seq) >= 3:
            eval_users.append(u)
            train.append(seq[:-2])
            train_events.append(ev[:-2])
        else:
            train.append(seq)
            train_events.append(ev)
    return Split(seqs=seqs, events=events, train=train, train_events=train_events,
                 eval_users=np.asarray(eval_users, dtype=np.int64),
                 n_items=len(item_to_index) + FIRST_ITEM_INDEX)
