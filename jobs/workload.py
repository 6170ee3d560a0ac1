"""Demo workloads built from real MovieLens-1M interactions (pure: no Kafka, no Flink).

Hold-out workload: for a sample of users, their interactions before the last one become
`user-events`; the last one is hidden and a `rank-requests` record asks to rank it among
`n_negatives` items the user never interacted with (uniform, fixed seed), in shuffled order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.replay_plan import EVENT_NAMES
from models.data import Interactions



@dataclass(frozen=True)
class Workload:
    events: list[tuple[str, dict[str, Any]]]    # (key, user-events value), in time order
    requests: list[tuple[str, dict[str, Any]]]  # (key, rank-requests value), `ts` set when sent
    targets: dict[str, str]                     # request_id -> the held-out item id


def holdout_workload(inter: Interactions, n_items: int, n_users: int, n_negatives: int,
                     history: int, seed: int) -> Workload:
    """Users with at least 2 interactions; `history` = most events sent per user (the latest)."""
    rng = np.random.default_rng(seed)
    lengths = np.diff(inter.offsets)
    eligible = np.flatnonzero(lengths >= 2)
    users = np.sort(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False))
    events, requests, targets = [], [], {}
    all_items = np.arange(1, n_items + 1)
    for u in users:
        sl = inter.user_slice(int(u))
        items, evs, ratings, ts = inter.items[sl], inter.events[sl], inter.ratings[sl], inter.timestamps[sl]
        user_id = str(inter.users[u])
        for j in range(max(0, len(items) - 1 - history), len(items) - 1):
            events.append((user_id, {"user_id": user_id, "item_id": str(items[j]), "event": EVENT_NAMES[int(evs[j])],
                                     "ts": int(ts[j]) * 1000, "value": float(ratings[j])}))
        target = str(items[-1])
        pool = np.setdiff1d(all_items, items, assume_unique=False)
        negatives = rng.choice(pool, size=min(n_negatives, len(pool)), replace=False)
        candidates = [target] + [str(x) for x in negatives]
        rng.shuffle(candidates)
        request_id = f"holdout-{user_id}"
        requests.append((user_id, {"request_id": request_id, "user_id": user_id, "candidates": candidates, "ts": 1}))
        targets[request_id] = target
    events.sort(key=lambda kv: kv[1]["ts"])  # stable: keeps each user's (timestamp, file row) order
    return Workload(events=events, requests=requests, targets=targets)
