import json

import pytest

from udfs.errors import InvalidRecord
from udfs.records import (MAX_DEAD_LETTER_PAYLOAD_CHARS, Reason, check_key, dead_letter, parse_event,
                          parse_request)


def ev(**kw):
    base = {"user_id": "u1", "item_id": "42", "event": "click", "ts": 1000}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def req(**kw):
    base = {"request_id": "r1", "user_id": "u1", "candidates": ["1", "2", "3"], "ts": 2000}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_parse_event_ok_bytes_and_str():
    e = parse_event(ev(value=4).encode())
    assert (e.user_id, e.item_id, e.event, e.ts, e.value) == ("u1", "42", "click", 1000, 4.0)
    assert parse_event(ev()).value is None


@pytest.mark.parametrize("raw, reason, code", [
    (b"\xff\xfe", "not UTF-8", Reason.NOT_UTF8),
    ("{not json", "invalid JSON", Reason.BAD_JSON),
    ("[1, 2]", "expected a JSON object", Reason.NOT_OBJECT),
    (None, "null value", Reason.NULL_VALUE),
    (ev(user_id=...), "missing field 'user_id'", Reason.MISSING_FIELD),
    (ev(user_id=""), "'user_id' is empty", Reason.EMPTY_ID),
    (ev(item_id=42), "'item_id' must be str", Reason.WRONG_TYPE),
    (ev(ts="yesterday"), "'ts' must be int", Reason.WRONG_TYPE),
    (ev(ts=True), "'ts' must be int", Reason.WRONG_TYPE),
    (ev(event="like"), "unknown event type 'like'", Reason.UNKNOWN_EVENT),
    (ev(value="high"), "'value' must be int|float", Reason.WRONG_TYPE),
    (ev(ts=0), "'ts' must be epoch milliseconds", Reason.TS_OUT_OF_RANGE),
    (ev(user_id="a\tb"), "'user_id' contains U\\+0009", Reason.BAD_ID),
    (ev(item_id="x" * 257), "'item_id' is 257 bytes", Reason.ID_TOO_LONG),
    ('{"user_id": "u1", "item_id": "42", "event": "rate", "ts": 1000, "value": NaN}',
     "'value' is not a finite number: NaN", Reason.NON_FINITE),
    ('{"user_id": "u1", "item_id": "42", "item_id": "43", "event": "rate", "ts": 1000}',
     "duplicate key 'item_id'", Reason.DUPLICATE_KEY),
])
def test_parse_event_rejects(raw, reason, code):
    with pytest.raises(InvalidRecord, match=reason) as info:
        parse_event(raw)
    assert info.value.reason == code and info.value.step == "parse user-event"
    assert str(info.value).endswith(f"[{code}]")


def test_parse_request_ok_dedupes_candidates_keeping_order():
    r = parse_request(req(candidates=["3", "1", "3", "2", "1"], k=2), max_candidates=10)
    assert r.candidates == ("3", "1", "2")
    assert r.k == 2 and r.request_id == "r1"


@pytest.mark.parametrize("raw, reason, code", [
    (req(candidates=[]), "'candidates' is empty", Reason.EMPTY_CANDIDATES),
    (req(candidates="1,2"), "'candidates' must be list", Reason.WRONG_TYPE),
    (req(candidates=["1", 2]), r"candidates\[1\] must be a non-empty string", Reason.WRONG_TYPE),
    (req(candidates=[str(i) for i in range(11)]), "11 candidates exceed the limit of 10", Reason.TOO_MANY_CANDIDATES),
    (req(k=0), "'k' must be >= 1", Reason.K_OUT_OF_RANGE),
    (req(k=11), "'k' must be >= 1 and <= 10", Reason.K_OUT_OF_RANGE),
    (req(k=1.5), "'k' must be int", Reason.WRONG_TYPE),
    (req(request_id=...), "missing field 'request_id'", Reason.MISSING_FIELD),
    (req(request_id=None), r"missing field 'request_id' \(null\)", Reason.MISSING_FIELD),
    (req(candidates=["1", " "]), r"'candidates\[1\]' is empty", Reason.EMPTY_ID),
    ('{"request_id": "r1", "user_id": "u1", "candidates": ["1", -Infinity], "ts": 2000}',
     r"'candidates\[1\]' is not a finite number", Reason.NON_FINITE),
    ('{"request_id": "r1", "user_id": "u1", "candidates": ["1"], "ts": 2000, "x": {"y": [1, 1e400]}}',
     r"'x.y\[1\]' is not a finite number", Reason.NON_FINITE),
    (req(ts=10 ** 31), "'ts' has more than 30 digits", Reason.NUMBER_TOO_LARGE),
])
def test_parse_request_rejects(raw, reason, code):
    with pytest.raises(InvalidRecord, match=reason) as info:
        parse_request(raw, max_candidates=10)
    assert info.value.reason == code and info.value.step == "parse rank-request"


def test_k_above_the_distinct_candidates_is_kept_for_ranking_to_clamp():
    assert parse_request(req(k=10), max_candidates=10).k == 10


def test_bounds_are_configurable():
    long_id = "u" * 300
    assert parse_event(ev(user_id=long_id), max_id_bytes=300).user_id == long_id
    with pytest.raises(InvalidRecord) as info:
        parse_request(req(candidates=["1", "\u00e9" * 6]), max_candidates=10, max_id_bytes=11)
    assert info.value.reason == Reason.ID_TOO_LONG and "'candidates[1]' is 12 bytes" in str(info.value)
    value = ev()
    parse_event(value, max_value_bytes=len(value))
    with pytest.raises(InvalidRecord) as info:
        parse_event(value, max_value_bytes=len(value) - 1)
    assert info.value.reason == Reason.VALUE_TOO_LARGE


def test_value_size_counts_utf8_bytes_of_str_input():
    value = ev(item_id="\u20ac" * 20)  # 20 characters, 60 bytes
    size = len(value.encode())
    assert parse_event(value, max_value_bytes=size).item_id == "\u20ac" * 20
    with pytest.raises(InvalidRecord, match="above the limit"):
        parse_event(value, max_value_bytes=size - 1)


@pytest.mark.parametrize("key", [None, "u1", b"u1", bytearray(b"u1")])
def test_check_key_accepts_null_or_the_user_id(key):
    check_key(key, parse_event(ev()))


@pytest.mark.parametrize("key, detail", [("u2", "Kafka key 'u2' differs"), (b"", "Kafka key '' differs"),
                                         (b"\xff", "is not UTF-8"), (b"U1", "Kafka key 'U1' differs")])
def test_check_key_rejects_another_user(key, detail):
    record = parse_request(req(), max_candidates=10)
    with pytest.raises(InvalidRecord, match=detail) as info:
        check_key(key, record)
    assert info.value.reason == Reason.KEY_MISMATCH and info.value.step == "check key"


def test_invalid_record_message_code_and_pickling():
    import pickle

    exc = InvalidRecord("route", "record from unexpected topic 'x'")  # the job's own call: default code
    assert (exc.step, exc.detail, exc.reason) == ("route", "record from unexpected topic 'x'", "invalid")
    assert str(exc) == "route: record from unexpected topic 'x' [invalid]"
    back = pickle.loads(pickle.dumps(InvalidRecord("s", "d", Reason.BAD_JSON)))
    assert (back.step, back.detail, back.reason, str(back)) == ("s", "d", "bad_json", "s: d [bad_json]")


def test_dead_letter_shape_and_truncation():
    d = json.loads(dead_letter("t", 1, 7, "boom", b"\xffabc"))
    assert d == {"topic": "t", "partition": 1, "offset": 7, "error": "boom", "payload": "\ufffdabc"}
    big = json.loads(dead_letter("t", 0, 0, "e", "x" * (MAX_DEAD_LETTER_PAYLOAD_CHARS + 10)))
    assert big["payload"].endswith("...[truncated]")
    assert len(big["payload"]) < MAX_DEAD_LETTER_PAYLOAD_CHARS + 20


def test_dead_letter_carries_the_reason_code_when_given():
    try:
        parse_event(ev(event="like"))
    except InvalidRecord as exc:
        d = json.loads(dead_letter("t", 0, 3, str(exc), ev(event="like"), reason=exc.reason))
    assert d["reason"] == "unknown_event" and d["error"].startswith("parse user-event: unknown event type")


def test_nesting_is_bounded_before_the_recursive_parser():
    from udfs.records import MAX_JSON_DEPTH

    def nested(depth):  # an event whose extra field makes the record `depth` deep
        return ev(extra=json.loads("[" * (depth - 1) + "]" * (depth - 1)))

    assert parse_event(nested(MAX_JSON_DEPTH)).user_id == "u1"
    with pytest.raises(InvalidRecord, match=f"nested {MAX_JSON_DEPTH + 1} deep") as info:
        parse_event(nested(MAX_JSON_DEPTH + 1))
    assert info.value.reason == Reason.BAD_JSON
    with pytest.raises(InvalidRecord, match="nested 100000 deep"):
        parse_event("[" * 100_000)
    # Brackets in strings do not nest, and escaped quotes do not end a string.
    assert parse_event(ev(item_id='\\"' + "[" * 200)).item_id == '\\"' + "[" * 200


def test_a_rejected_number_in_otherwise_invalid_json_is_bad_json():
    with pytest.raises(InvalidRecord) as info:
        parse_event('{"user_id": "u1", "value": NaN')
    assert info.value.reason == Reason.BAD_JSON


def test_event_types_come_from_the_limits():
    from udfs.records import Limits, parse_record

    wish = json.dumps({"user_id": "u", "item_id": "i", "event": "wishlist", "ts": 1_700_000_000_000})
    limits = Limits(10, event_types=("view", "click", "cart", "purchase", "rate", "wishlist"))
    assert parse_record("ev", wish, None, "ev", "rq", limits).event == "wishlist"
    with pytest.raises(InvalidRecord, match="unknown event type"):
        parse_record("ev", wish, None, "ev", "rq", Limits(10))
