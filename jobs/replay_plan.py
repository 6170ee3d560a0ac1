"""The replay plan: MovieLens-1M after a cut time, as a timed sequence of events and requests
(pure: no Kafka, no Flink, unit-tested).

- Clock: interactions in (timestamp, file row) order; gaps are capped at `max_gap_s` (activity is
  bursty, days of silence carry no information) and divided by `speedup`.
- Bootstrap: for every user in the slice, their last `bootstrap_len` interactions before the cut,
  replayed first so the job's state starts where a nightly batch would.
- Requests: just before each post-cut interaction of a user with pre-cut history, a request
  ranks the true item among `n_negatives` items the user never interacted with (uniform, fixed
  seed), in shuffled order. The slice ends with the interaction of the last request.
- Frozen arm: each user's history as of the cut. Popular arm: item counts before the cut.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# EVENT_NAMES: event index (as stored in Interactions) -> event name on the topic (the model contract's).
from models.data import EVENT_NAMES, Interactions


@dataclass(frozen=True)
class Step:
    at_s: float               # replay clock: seconds after the replay starts
    kind: str                 # "event" | "request"
    key: str
    value: dict[str, Any]


@dataclass
class ReplayPlan:
    cut: int
    bootstrap: list[tuple[str, dict[str, Any]]]
    steps: list[Step]
    targets: dict[str, str]                          # request_id -> true next item
    expected_history: dict[str, list[dict]]          # request_id -> events of the user sent before it
    frozen_history: dict[str, list[dict]]            # user -> events before the cut (as bootstrapped)
    popularity: dict[str, int] = field(default_factory=dict)  # item -> interactions before the cut

    @property
    def requests(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "request"]

    @property
    def duration_s(self) -> float:
        return self.steps[-1].at_s if self.steps else 0.0


def _event(user: str, item: int, event: int, ts_s: int, rating: float) -> dict[str, Any]:
    return {"user_id": user, "item_id": str(item), "event": EVENT_NAMES[int(event)], "ts": int(ts_s) * 1000,
            "value": float(rating)}


def build_plan(inter: Interactions, n_items: int, cut: int, n_requests: int, n_negatives: int = 100,
               bootstrap_len: int = 200, speedup: float = 100.0, max_gap_s: float = 60.0,
               seed: int = 0) -> ReplayPlan:
    rng = np.random.default_rng(seed)
    user_of = np.repeat(np.arange(inter.n_users), np.diff(inter.offsets))
    # Global (timestamp, file row) order: CSR position breaks ties within a user's second.
    order = np.lexsort((np.arange(len(inter.timestamps)), inter.timestamps))
    post = order[inter.timestamps[order] >= cut]
    pre_mask = inter.timestamps < cut
    has_pre = np.bincount(user_of[pre_mask], minlength=inter.n_users) > 0
    popularity = np.bincount(inter.items[pre_mask], minlength=n_items + 1)
    all_items = np.arange(1, n_items + 1)

    bootstrap, steps, targets, expected, frozen = [], [], {}, {}, {}
    sent: dict[str, list[dict]] = {}
    clock, prev_ts, n_req = 0.0, None, 0
    for idx in post:
        if n_req >= n_requests:
            break
        u = int(user_of[idx])
        user = str(inter.users[u])
        if user not in sent:
            sl = inter.user_slice(u)
            before = [i for i in range(sl.start, sl.stop) if inter.timestamps[i] < cut][-bootstrap_len:]
            frozen[user] = [_event(user, inter.items[i], inter.events[i], inter.timestamps[i], inter.ratings[i])
                            for i in before]
            bootstrap.extend((user, e) for e in frozen[user])
            sent[user] = list(frozen[user])
        ts = int(inter.timestamps[idx])
        if prev_ts is not None and speedup > 0:  # speedup 0: no clock, the sender paces itself
            clock += min(ts - prev_ts, max_gap_s) / speedup
        prev_ts = ts
        ev = _event(user, inter.items[idx], inter.events[idx], ts, inter.ratings[idx])
        if has_pre[u]:
            rid = f"replay-{n_req}"
            sl = inter.user_slice(u)
            pool = np.setdiff1d(all_items, inter.items[sl])
            candidates = [ev["item_id"]] + [str(x) for x in rng.choice(pool, size=min(n_negatives, len(pool)),
                                                                        replace=False)]
            rng.shuffle(candidates)
            steps.append(Step(clock, "request", user, {"request_id": rid, "user_id": user,
                                                       "candidates": candidates, "ts": ts * 1000}))
            targets[rid] = ev["item_id"]
            expected[rid] = list(sent[user])
            n_req += 1
        steps.append(Step(clock, "event", user, ev))
        sent[user].append(ev)
    bootstrap.sort(key=lambda kv: kv[1]["ts"])
    return ReplayPlan(cut=cut, bootstrap=bootstrap, steps=steps, targets=targets, expected_history=expected,
                      frozen_history=frozen,
                      popularity={str(i): int(c) for i, c in enumerate(popularity) if i and c})
