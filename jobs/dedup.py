"""Consumer-side deduplication of `ranked-lists` by `request_id` (pure: no Kafka, no Flink).

The job answers every request at least once. After a failure it replays from its last checkpoint,
so a consumer may see a request's list twice (AT_LEAST_ONCE, or a broker that shows aborted
transactions); the copies are identical apart from `emitted_at`. A producer may also send the same
`request_id` twice: the job, stateless at parse time, answers both, and the answers may differ.
`Deduplicator` passes the first list of each request_id and drops later ones, counting those that
were not identical copies ("conflicts"), so that case is visible rather than silently merged.

    dedup = Deduplicator(max_entries=100_000)
    for message in consumer:                      # e.g. a kafka-python KafkaConsumer
        ranked = json.loads(message.value)
        if dedup.accept(ranked):
            serve(ranked)

Memory is bounded: the most recently seen `max_entries` request_ids are remembered with a 16-byte
digest each (about 200 bytes per entry with a short id, so ~20 MB for the default 100k); a copy
arriving after its id was evicted passes again. Size the window above the number of lists a replay can repeat (the lists emitted
in one checkpoint interval plus the restart time).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

# Set when the list left the job, so it differs between copies of the same answer.
VOLATILE_FIELDS: frozenset[str] = frozenset({"emitted_at"})


def fingerprint(record: Mapping[str, Any]) -> bytes:
    """Digest of a ranked list without its volatile fields: equal for copies of the same answer."""
    stable = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Deduplicator:
    """Passes the first ranked list of each `request_id` among the last `max_entries` seen."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._seen: OrderedDict[str, bytes] = OrderedDict()  # request_id -> fingerprint, oldest first
        self.accepted = 0
        self.duplicates = 0  # identical copies (apart from VOLATILE_FIELDS), dropped
        self.conflicts = 0   # same request_id, different content: dropped too, counted and logged
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, record: Mapping[str, Any]) -> bool:
        """True for the first list of its request_id (pass it on); False for a later one."""
        try:
            request_id = record["request_id"]
        except (KeyError, TypeError):
            raise ValueError(f"not a ranked list (no request_id): {str(record)[:80]}") from None
        digest = fingerprint(record)
        first = self._seen.get(request_id)
        if first is None:
            self._seen[request_id] = digest
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
                self.evicted += 1
            self.accepted += 1
            return True
        # Copies of a replay arrive in bursts: keep the id in the window while they come.
        self._seen.move_to_end(request_id)
        if first == digest:
            self.duplicates += 1
        else:
            self.conflicts += 1
            log.warning("request_id %r answered twice with different lists (a request_id sent twice?); "
                        "kept the first", request_id)
        return False

    def stats(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "conflicts": self.conflicts,
                "evicted": self.evicted, "size": len(self._seen)}


def dedup(records: Iterable[Mapping[str, Any]], max_entries: int = 100_000) -> Iterator[Mapping[str, Any]]:
    """The records that `Deduplicator(max_entries)` accepts, in order."""
    d = Deduplicator(max_entries)
    return (r for r in records if d.accept(r))
