"""The topic contract: parsing and validating input records, and the dead-letter record.

Input values are JSON objects (see README, "Topic contract" and "Valid but odd vs invalid").
Anything that does not match raises `InvalidRecord` with a step, a detail that names the field and
the offending value, and a `Reason` code; the job turns it into a dead-letter record instead of
failing. Parsing is pure and stateless: what needs state (a `request_id` seen twice) is left to
the consumer (`jobs.dedup`).

Checks run cheapest first and the first failure wins: size of the raw value (before any
decoding), UTF-8, JSON syntax (no duplicate keys, no NaN/Infinity, no overflowing numbers), a JSON
object, then the fields in contract order.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from collections.abc import Collection
from typing import Any

from udfs.errors import InvalidRecord

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rate")
# `{"user_id", "event": "forget", "ts"}` on user-events: clear everything the job holds for the user.
# On the events topic, keyed by user, it is ordered after every earlier event of that user (a
# separate topic could overtake events still in flight, which would then re-create the state).
FORGET_EVENT = "forget"
# Dead letters keep the payload for replay, but not unbounded: a 10 MB garbage record must not
# produce a 10 MB dead letter.
MAX_DEAD_LETTER_PAYLOAD_CHARS = 65536
# Ids end up in keyed state, in the output and in logs: a few hundred bytes is far above any real id
# (UUIDs are 36) and keeps a hostile producer from growing per-user state through its ids.
DEFAULT_MAX_ID_BYTES = 256
# Checked before decoding, so a 1 MB value costs a len(). The default admits the largest valid
# request under the other defaults (1000 candidates of 256-byte ids is ~259 KB of JSON).
DEFAULT_MAX_VALUE_BYTES = 262144
# Epoch milliseconds, 1 ms after 1970 up to 2100-01-01T00:00:00Z: 0, negatives and seconds-vs-ms
# mix-ups by a factor of 1000 in the future are caught; anything older than 1970 is not real here.
MIN_TS_MS = 1
MAX_TS_MS = 4_102_444_800_000
# Deeper JSON is refused before it reaches json's recursive C parser, which would otherwise overflow
# the C stack of a thread with a small stack (a crash, not an exception; seen at 128 KiB) well before
# Python's recursion limit. A contract record nests 2 deep (object, candidates).
MAX_JSON_DEPTH = 64
# Longer integer literals are rejected while parsing: int() of a 60k-digit literal is quadratic and
# Python refuses > 4300 digits with a ValueError; no field of the contract needs more than 13 digits.
MAX_INT_DIGITS = 30


class Reason(StrEnum):
    """Machine-readable reason codes of `InvalidRecord` (one dead-letter counter each)."""

    NULL_VALUE = "null_value"                    # the Kafka value is null (a tombstone)
    VALUE_TOO_LARGE = "value_too_large"          # raw value above max_value_bytes
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"                        # invalid, truncated or too deeply nested JSON
    DUPLICATE_KEY = "duplicate_key"              # a JSON object repeats a key (at any depth)
    NON_FINITE = "non_finite"                    # NaN, Infinity, or a float literal that overflows
    NUMBER_TOO_LARGE = "number_too_large"        # an integer literal above MAX_INT_DIGITS digits
    NOT_OBJECT = "not_object"                    # valid JSON, but not an object
    MISSING_FIELD = "missing_field"              # a required field absent or null
    WRONG_TYPE = "wrong_type"
    EMPTY_ID = "empty_id"                        # empty or whitespace-only id
    BAD_ID = "bad_id"                            # id with a control character or a lone surrogate
    ID_TOO_LONG = "id_too_long"                  # id above max_id_bytes in UTF-8
    UNKNOWN_EVENT = "unknown_event"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    EMPTY_CANDIDATES = "empty_candidates"
    TOO_MANY_CANDIDATES = "too_many_candidates"  # above max_candidates
    K_OUT_OF_RANGE = "k_out_of_range"            # k < 1 or k > max_candidates
    KEY_MISMATCH = "key_mismatch"                # non-null Kafka key != the value's user_id
    UNKNOWN_FIELD = "unknown_field"              # a control record with a field the contract does not define
    BAD_SHARE = "bad_share"                      # A/B arm shares not in (0, 1] or not summing to 1
    UNKNOWN_MODEL = "unknown_model"              # an arm names a model version never announced
    MODEL_REFUSED = "model_refused"              # an announced model failed to load or validate; old one serves
    BAD_EMBEDDING = "bad_embedding"              # an item-embeddings record the scorer cannot use (udfs/rerank.py)
    BAD_TREND = "bad_trend"                      # an item-trends record the scorer cannot use (udfs/trending.py)
    INVALID = "invalid"                          # InvalidRecord's default: any other check


# Reasons only the broadcast inputs produce: model-updates (udfs/control.py) and item-embeddings
# (udfs/rerank.py).
CONTROL_REASONS = frozenset({Reason.UNKNOWN_FIELD, Reason.BAD_SHARE, Reason.UNKNOWN_MODEL, Reason.MODEL_REFUSED,
                             Reason.BAD_EMBEDDING, Reason.BAD_TREND})


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


# C0 and C1 control characters (incl. NUL, newline, DEL) and surrogates: JSON "\ud800" decodes to a
# lone surrogate (pairs are combined by the decoder), which cannot be encoded to UTF-8 for the output.
_BAD_ID_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _NumberRejected(Exception):
    def __init__(self, reason: Reason, literal: str) -> None:
        self.reason, self.literal = reason, literal[:40]


class _Marker:
    """Stands in for a rejected number when locating it (failure path only)."""


class _Pairs(list):
    """A JSON object as its (key, value) pairs, repeated keys kept (failure path only)."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated keys: {"user_id": "a", "user_id": "b"} would be read
    # differently by consumers that keep the first, so such a record is ambiguous, not valid.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:  # NaN, Infinity, -Infinity: json accepts them, JSON does not
    raise _NumberRejected(Reason.NON_FINITE, name)


def _finite_float(literal: str) -> float:
    value = float(literal)  # 1e999 parses to inf
    if not math.isfinite(value):
        raise _NumberRejected(Reason.NON_FINITE, literal)
    return value


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS:
        raise _NumberRejected(Reason.NUMBER_TOO_LARGE, literal)
    return int(literal)


# Built once: json.loads(text, **hooks) would build a decoder per call, doubling the cost of a small
# record. Stateless, so shared by all threads.
_STRICT = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant,
                           parse_float=_finite_float, parse_int=_bounded_int)


def _locate_number(text: str) -> str:
    """Path of the first rejected number in `text`, e.g. "ts" or "candidates[3]" (failure path only).

    The strict decoder stops at the number without knowing its field: parse again with markers in
    place of rejected numbers, then find the first marker depth-first in document order."""
    def mark(literal: str, parse: Any) -> Any:
        try:
            return parse(literal)
        except _NumberRejected:
            return _Marker()
    root = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=lambda c: _Marker(),
                            parse_float=lambda f: mark(f, _finite_float),
                            parse_int=lambda i: mark(i, _bounded_int)).decode(text)
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Marker):
            return path or "(top level)"
        if isinstance(node, _Pairs):
            children = [(f"{path}.{k}" if path else k, v) for k, v in node]
        elif isinstance(node, list):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return "(unknown)"


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting(text: str) -> int:
    """How deep `text` nests, or a bound that is at most MAX_JSON_DEPTH when it is shallow."""
    opening = text.count("[") + text.count("{")
    if opening <= MAX_JSON_DEPTH:  # every record of the contract: nothing more to do
        return opening
    # Brackets inside strings do not nest; the rest is a running sum, all of it in C.
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)


def _json_error(step: str, exc: json.JSONDecodeError) -> InvalidRecord:
    return InvalidRecord(step, f"invalid JSON: {exc.msg} (position {exc.pos})", Reason.BAD_JSON)


def _loads(text: str, step: str) -> Any:
    depth = _nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRecord(step, f"invalid JSON: nested {depth} deep, above {MAX_JSON_DEPTH}", Reason.BAD_JSON)
    try:
        return _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        raise _json_error(step, exc) from None
    except RecursionError:  # not reached below MAX_JSON_DEPTH; kept so it can never escape
        raise InvalidRecord(step, "invalid JSON: nested too deeply", Reason.BAD_JSON) from None
    except _DuplicateKey as exc:
        raise InvalidRecord(step, f"duplicate key {exc.key!r:.80} in a JSON object", Reason.DUPLICATE_KEY) from None
    except _NumberRejected as exc:
        rejected = exc
    # The strict decoder stopped at the number; the rest of the text may still be invalid JSON
    # (`{"value": NaN` truncated): then that is the reason.
    try:
        path = _locate_number(text)
    except json.JSONDecodeError as exc:
        raise _json_error(step, exc) from None
    what = "is not a finite number" if rejected.reason is Reason.NON_FINITE else \
        f"has more than {MAX_INT_DIGITS} digits"
    raise InvalidRecord(step, f"field '{path}' {what}: {rejected.literal}", rejected.reason)


def _decode(raw: bytes | str | None, step: str, max_value_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord(step, "empty record (null value)", Reason.NULL_VALUE)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        size = len(raw)
        if size > max_value_bytes:
            raise InvalidRecord(step, f"value is {size} bytes, above the limit of {max_value_bytes}",
                                Reason.VALUE_TOO_LARGE)
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(step, f"value is not UTF-8: {exc}", Reason.NOT_UTF8) from None
    elif isinstance(raw, str):
        # A character is 1-4 bytes: encode only when the length alone cannot decide.
        if len(raw) > max_value_bytes or (len(raw) * 4 > max_value_bytes
                                          and len(raw.encode("utf-8", "surrogatepass")) > max_value_bytes):
            raise InvalidRecord(step, f"value is above the limit of {max_value_bytes} bytes",
                                Reason.VALUE_TOO_LARGE)
    else:
        raise InvalidRecord(step, f"value must be bytes or str, got {type(raw).__name__}", Reason.WRONG_TYPE)
    obj = _loads(raw, step)
    if not isinstance(obj, dict):
        raise InvalidRecord(step, f"expected a JSON object, got {type(obj).__name__}", Reason.NOT_OBJECT)
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], step: str,
           required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:  # null is the same as absent: required fields reject it, optional ones skip it
        if required:
            null = " (null)" if name in obj else ""
            raise InvalidRecord(step, f"missing field '{name}'{null}", Reason.MISSING_FIELD)
        return None
    # bool is an int subclass in Python; a JSON `true` is never a valid number here.
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "|".join(k.__name__ for k in kind)
        raise InvalidRecord(step, f"field '{name}' must be {names}, got {value!r:.80}", Reason.WRONG_TYPE)
    return value


def check_id(value: str, what: str, step: str, max_id_bytes: int) -> str:
    """`value` (a str) is a usable id: not blank, no control characters, at most max_id_bytes."""
    if not value.strip():
        raise InvalidRecord(step, f"{what} is empty", Reason.EMPTY_ID)
    bad = _BAD_ID_CHAR.search(value)
    if bad is not None:
        raise InvalidRecord(step, f"{what} contains U+{ord(bad.group()):04X} (control character or lone "
                                  f"surrogate) at index {bad.start()}", Reason.BAD_ID)
    # No surrogates left, so encode() cannot fail; skip it when 4 bytes per character would fit.
    if len(value) * 4 > max_id_bytes:
        size = len(value.encode("utf-8"))
        if size > max_id_bytes:
            raise InvalidRecord(step, f"{what} is {size} bytes in UTF-8, above the limit of {max_id_bytes}: "
                                      f"{value!r:.40}", Reason.ID_TOO_LONG)
    return value


def _check_candidates(candidates: list[Any], step: str, max_id_bytes: int) -> None:
    """Every candidate is a usable id (`check_id`); the first bad one is named."""
    # Fast path, list-wide in C (a request has up to 1000 candidates, ~2x cheaper than a loop of
    # check_id): all str and non-blank, no bad character, short enough without encoding.
    try:
        ok = (all(map(str.strip, candidates)) and _BAD_ID_CHAR.search(" ".join(candidates)) is None
              and max(map(len, candidates)) * 4 <= max_id_bytes)
    except TypeError:  # str.strip of a non-str
        ok = False
    if ok:
        return
    for i, item in enumerate(candidates):
        if not isinstance(item, str):
            raise InvalidRecord(step, f"candidates[{i}] must be a non-empty string, got {item!r:.80}",
                                Reason.WRONG_TYPE)
        check_id(item, f"field 'candidates[{i}]'", step, max_id_bytes)


def _id(obj: dict[str, Any], name: str, step: str, max_id_bytes: int) -> str:
    return check_id(_field(obj, name, str, step), f"field '{name}'", step, max_id_bytes)


def _ts(obj: dict[str, Any], step: str) -> int:
    ts = _field(obj, "ts", int, step)
    if not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise InvalidRecord(step, f"field 'ts' must be epoch milliseconds in [{MIN_TS_MS}, {MAX_TS_MS}] "
                                  f"(before 2100), got {ts}", Reason.TS_OUT_OF_RANGE)
    return ts


def parse_event(raw: bytes | str | None, *, max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
                max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                event_types: Collection[str] | None = EVENT_TYPES) -> UserEvent:
    """Parse a `user-events` value; raises InvalidRecord. Extra fields are ignored.

    `event_types=None` accepts any event name that is a valid id (the trainer reads logs with the
    user's own event names); the job keeps the contract's names."""
    step = "parse user-event"
    return event_from_object(_decode(raw, step, max_value_bytes), max_id_bytes=max_id_bytes,
                             event_types=event_types, step=step)


def event_from_object(obj: dict[str, Any], *, max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
                      event_types: Collection[str] | None = EVENT_TYPES,
                      step: str = "parse user-event") -> UserEvent:
    """The field checks of `parse_event` on an already decoded object (a Parquet row, say)."""
    user_id = _id(obj, "user_id", step, max_id_bytes)
    event = _field(obj, "event", str, step)
    if event == FORGET_EVENT:
        return UserEvent(user_id=user_id, item_id="", event=event, ts=_ts(obj, step))
    item_id = _id(obj, "item_id", step, max_id_bytes)
    if event_types is None:
        check_id(event, "field 'event'", step, max_id_bytes)
    elif event not in event_types:
        raise InvalidRecord(step, f"unknown event type {event!r:.40}, expected one of {list(event_types)}",
                            Reason.UNKNOWN_EVENT)
    ts = _ts(obj, step)
    value = _field(obj, "value", (int, float), step, required=False)
    # From JSON, _loads already rejected non-finite numbers; a decoded row (Parquet) can still hold one.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecord(step, f"field 'value' is not a finite number: {value}", Reason.NON_FINITE)
    return UserEvent(user_id=user_id, item_id=item_id, event=event, ts=ts,
                     value=None if value is None else float(value))


def parse_request(raw: bytes | str | None, max_candidates: int, *, max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
                  max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> RankRequest:
    """Parse a `rank-requests` value; raises InvalidRecord. Extra fields are ignored.

    Duplicate candidates are collapsed to their first occurrence, so the ranked list is a
    permutation of distinct candidates. `k` may exceed the number of distinct candidates (the list
    is then all of them) but not `max_candidates`. A `request_id` seen before is not detected here
    (that needs state): the job answers each, and `jobs.dedup` deduplicates for consumers.
    """
    step = "parse rank-request"
    obj = _decode(raw, step, max_value_bytes)
    request_id = _id(obj, "request_id", step, max_id_bytes)
    user_id = _id(obj, "user_id", step, max_id_bytes)
    candidates = _field(obj, "candidates", list, step)
    if not candidates:
        raise InvalidRecord(step, "field 'candidates' is empty", Reason.EMPTY_CANDIDATES)
    if len(candidates) > max_candidates:
        raise InvalidRecord(step, f"{len(candidates)} candidates exceed the limit of {max_candidates}",
                            Reason.TOO_MANY_CANDIDATES)
    _check_candidates(candidates, step, max_id_bytes)
    k = _field(obj, "k", int, step, required=False)
    if k is not None and not 1 <= k <= max_candidates:
        raise InvalidRecord(step, f"field 'k' must be >= 1 and <= {max_candidates} (the candidate limit), "
                                  f"got {k}", Reason.K_OUT_OF_RANGE)
    return RankRequest(request_id=request_id, user_id=user_id, candidates=tuple(dict.fromkeys(candidates)),
                       k=k, ts=_ts(obj, step))


def check_key(key: bytes | str | None, record: UserEvent | RankRequest) -> None:
    """A non-null Kafka key must equal the value's `user_id`; raises InvalidRecord(KEY_MISMATCH).

    Producers key by user so that a user's events and requests share a partition, which is what
    keeps them in order; a record keyed by someone else may overtake (or be overtaken by) the
    user's other records. A null key (no partitioning intent) is accepted.
    """
    if key is None:
        return
    step = "check key"
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            key = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord(step, f"Kafka key {bytes(key)!r:.80} is not UTF-8, so it is not user_id "
                                      f"{record.user_id!r:.80}", Reason.KEY_MISMATCH) from None
    if key != record.user_id:
        raise InvalidRecord(step, f"Kafka key {key!r:.80} differs from field 'user_id' {record.user_id!r:.80}",
                            Reason.KEY_MISMATCH)


@dataclass(frozen=True)
class Limits:
    """The bounds a record is validated against (JobConfig: --max-candidates, --max-id-bytes, ...)."""

    max_candidates: int
    max_id_bytes: int = DEFAULT_MAX_ID_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    # The event names accepted on user-events (JobConfig --event-types); stored histories hold their
    # positions in this tuple, so it may only grow at its end.
    event_types: tuple[str, ...] = EVENT_TYPES


def parse_record(topic: str, payload: bytes | str | None, key: bytes | str | None, events_topic: str,
                 requests_topic: str, limits: Limits) -> UserEvent | RankRequest:
    """One input record by its source topic, key checked; raises InvalidRecord."""
    if topic == events_topic:
        record: UserEvent | RankRequest = parse_event(payload, max_id_bytes=limits.max_id_bytes,
                                                      max_value_bytes=limits.max_value_bytes,
                                                      event_types=limits.event_types)
    elif topic == requests_topic:
        record = parse_request(payload, limits.max_candidates, max_id_bytes=limits.max_id_bytes,
                               max_value_bytes=limits.max_value_bytes)
    else:
        raise InvalidRecord("route", f"record from unexpected topic {topic!r}")
    check_key(key, record)
    return record


def dead_letter(topic: str, partition: int, offset: int, error: str, payload: bytes | str | None,
                reason: str | None = None, redact: bool = False) -> str:
    """The JSON value written to `dead-letters` for a record that could not be processed.

    `reason` (an `InvalidRecord.reason` code) is included when given, for consumers counting per reason.
    `redact` (pseudonymization on): the payload is replaced by its sha256 and size, since it holds
    raw ids; the record stays findable by topic/partition/offset for whoever may read the input.
    """
    if redact:
        raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload or b"")
        record: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "error": error}
        if reason is not None:
            record["reason"] = str(reason)
        record.update(payload=None, payload_sha256=hashlib.sha256(raw).hexdigest(), payload_bytes=len(raw))
        return json.dumps(record)
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).decode("utf-8", errors="replace")
    if payload is not None and len(payload) > MAX_DEAD_LETTER_PAYLOAD_CHARS:
        payload = payload[:MAX_DEAD_LETTER_PAYLOAD_CHARS] + "...[truncated]"
    record: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "error": error}
    if reason is not None:
        record["reason"] = str(reason)
    record["payload"] = payload
    return json.dumps(record)
