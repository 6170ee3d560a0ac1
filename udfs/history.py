"""Per-user rolling behavior state and its pure update rule.

The keyed function stores one `UserHistory` per user as a single JSON string: one state read and
one write per record (each state access is a round trip from Python), and JSON keeps savepoints
readable across code changes, unlike a pickled class.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from udfs.records import UserEvent


@dataclass(frozen=True)
class Snapshot:
    """What a request sees: the user's last events logged at or before the request, oldest first."""

    items: list[str]
    events: list[str]
    count: int  # all such events ever consumed for the user (emitted as `history_len`)


@dataclass
class UserHistory:
    """The user's most recent events (oldest first) and time-decayed event counters."""

    items: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)      # the event's own `ts` (epoch ms)
    log_ts: list[int] = field(default_factory=list)  # when the event was logged to Kafka (record timestamp)
    # Total events consumed for this user (not capped).
    count: int = 0
    # Exponentially decayed number of events per type, as of `decayed_at` (epoch ms).
    decayed: dict[str, float] = field(default_factory=dict)
    decayed_at: int = 0

    def to_json(self) -> str:
        return json.dumps({"i": self.items, "e": self.events, "t": self.ts, "l": self.log_ts, "n": self.count,
                           "d": self.decayed, "da": self.decayed_at}, separators=(",", ":"))

    @classmethod
    def from_json(cls, blob: str | None) -> "UserHistory":
        if not blob:
            return cls()
        o = json.loads(blob)
        return cls(items=o["i"], events=o["e"], ts=o["t"], log_ts=o["l"], count=o["n"], decayed=o["d"],
                   decayed_at=o["da"])

    def decayed_counts(self, now_ms: int, half_life_ms: int) -> dict[str, float]:
        """Decayed counters brought forward to `now_ms` (never decays backwards in time)."""
        factor = _decay(now_ms - self.decayed_at, half_life_ms)
        return {k: v * factor for k, v in self.decayed.items()}

    def as_of(self, log_ts: int, max_len: int) -> Snapshot:
        """The last `max_len` events logged at or before `log_ts`.

        Events logged after a request (consumed while the request waited for stragglers) must not
        leak into its ranking: they may be the very item the user went on to choose.
        """
        keep = len(self.log_ts)
        while keep and self.log_ts[keep - 1] > log_ts:
            keep -= 1
        start = max(0, keep - max_len)
        return Snapshot(self.items[start:keep], self.events[start:keep], self.count - (len(self.log_ts) - keep))


def _decay(elapsed_ms: int, half_life_ms: int) -> float:
    # Out-of-order events (elapsed < 0) must not inflate the counters.
    return math.exp(-math.log(2.0) * max(elapsed_ms, 0) / half_life_ms)


def apply_event(history: UserHistory, event: UserEvent, log_ts: int, window: int, half_life_ms: int) -> UserHistory:
    """Append `event` in arrival order, keep the last `window` events, update decayed counters."""
    now = max(event.ts, history.decayed_at)
    decayed = history.decayed_counts(now, half_life_ms)
    decayed[event.event] = decayed.get(event.event, 0.0) + 1.0
    return UserHistory(items=(history.items + [event.item_id])[-window:],
                       events=(history.events + [event.event])[-window:],
                       ts=(history.ts + [event.ts])[-window:],
                       log_ts=(history.log_ts + [log_ts])[-window:],
                       count=history.count + 1, decayed=decayed, decayed_at=now)
