"""When a waiting rank request may be answered (pure; the keyed function only calls this).

A request is answered "as of" its Kafka record timestamp: with the user's events logged at or
before it. Events and requests arrive through independent source splits, so an event logged just
before a request can reach the operator just after it. The request waits until the source
watermark (the minimum over all non-idle splits of the newest record timestamp seen) reaches its
own timestamp: from then on every split has delivered everything logged before it, and waiting
longer cannot change the answer. A cap bounds the wait when a split lags or stalls.
"""
from __future__ import annotations

from dataclasses import dataclass

from udfs.records import RankRequest


@dataclass(frozen=True)
class PendingRequest:
    log_ts: int    # the request's Kafka record timestamp (epoch ms): its as-of time
    due_ms: int    # processing time at which it is answered whatever the watermark says
    request: RankRequest


def ready(log_ts: int, watermark: int) -> bool:
    """True when no event logged at or before `log_ts` can still arrive (per the watermark)."""
    return watermark >= log_ts


def split_due(pending: list[PendingRequest], watermark: int, now_ms: int) -> tuple[list[PendingRequest], list[PendingRequest]]:
    """(answer now, keep waiting), each in arrival order."""
    now, later = [], []
    for p in pending:
        (now if ready(p.log_ts, watermark) or p.due_ms <= now_ms else later).append(p)
    return now, later
