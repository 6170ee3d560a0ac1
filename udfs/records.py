"""The topic contract: parsing and validating input records, and the dead-letter record.

Input values are JSON objects (see README, "Topic contract"). Anything that does not match raises
`InvalidRecord` with a reason that names the field and the offending value; the job turns it into a
dead-letter record instead of failing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from udfs.errors import InvalidRecord

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rate")
# Dead letters keep the payload for replay, but not unbounded: a 10 MB garbage record must not
# produce a 10 MB dead letter.
MAX_DEAD_LETTER_PAYLOAD_CHARS = 65536


@dataclass(frozen=True)
class UserEvent:
    user_id: str
    item_id: str
    event: str
    ts: int
    value: float | None = None


@dataclass(frozen=True)
class RankRequest:
    request_id: str
    user_id: str
    candidates: tuple[str, ...]
    k: int | None
    ts: int


def _decode(raw: bytes | str | None, step: str) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord(step, "empty record (null value)")
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(step, f"value is not UTF-8: {exc}") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRecord(step, f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(step, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], step: str,
           required: bool = True) -> Any:
    if name not in obj or obj[name] is None:
        if required:
            raise InvalidRecord(step, f"missing field '{name}'")
        return None
    value = obj[name]
    # bool is an int subclass in Python; a JSON `true` is never a valid number here.
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "|".join(k.__name__ for k in kind)
        raise InvalidRecord(step, f"field '{name}' must be {names}, got {value!r:.80}")
    return value


def _non_empty_str(obj: dict[str, Any], name: str, step: str) -> str:
    value = _field(obj, name, str, step)
    if not value.strip():
        raise InvalidRecord(step, f"field '{name}' is empty")
    return value


def parse_event(raw: bytes | str | None) -> UserEvent:
    """Parse a `user-events` value; raises InvalidRecord."""
    step = "parse user-event"
    obj = _decode(raw, step)
    event = _field(obj, "event", str, step)
    if event not in EVENT_TYPES:
        raise InvalidRecord(step, f"unknown event type {event!r:.40}, expected one of {list(EVENT_TYPES)}")
    value = _field(obj, "value", (int, float), step, required=False)
    return UserEvent(
        user_id=_non_empty_str(obj, "user_id", step),
        item_id=_non_empty_str(obj, "item_id", step),
        event=event,
        ts=_field(obj, "ts", int, step),
        value=None if value is None else float(value),
    )


def parse_request(raw: bytes | str | None, max_candidates: int) -> RankRequest:
    """Parse a `rank-requests` value; raises InvalidRecord.

    Duplicate candidates are collapsed to their first occurrence, so the ranked list is a
    permutation of distinct candidates.
    """
    step = "parse rank-request"
    obj = _decode(raw, step)
    candidates = _field(obj, "candidates", list, step)
    if not candidates:
        raise InvalidRecord(step, "field 'candidates' is empty")
    if len(candidates) > max_candidates:
        raise InvalidRecord(step, f"{len(candidates)} candidates exceed the limit of {max_candidates}")
    for i, item in enumerate(candidates):
        if not isinstance(item, str) or not item.strip():
            raise InvalidRecord(step, f"candidates[{i}] must be a non-empty string, got {item!r:.80}")
    k = _field(obj, "k", int, step, required=False)
    if k is not None and k < 1:
        raise InvalidRecord(step, f"field 'k' must be >= 1, got {k}")
    return RankRequest(
        request_id=_non_empty_str(obj, "request_id", step),
        user_id=_non_empty_str(obj, "user_id", step),
        candidates=tuple(dict.fromkeys(candidates)),
        k=k,
        ts=_field(obj, "ts", int, step),
    )


def dead_letter(topic: str, partition: int, offset: int, error: str, payload: bytes | str | None) -> str:
    """The JSON value written to `dead-letters` for a record that could not be processed."""
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).decode("utf-8", errors="replace")
    if payload is not None and len(payload) > MAX_DEAD_LETTER_PAYLOAD_CHARS:
        payload = payload[:MAX_DEAD_LETTER_PAYLOAD_CHARS] + "...[truncated]"
    return json.dumps({"topic": topic, "partition": partition, "offset": offset,
                       "error": error, "payload": payload})
