import json

import pytest

from udfs.errors import InvalidRecord
from udfs.records import MAX_DEAD_LETTER_PAYLOAD_CHARS, dead_letter, parse_event, parse_request


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


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe", "not UTF-8"),
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (None, "null value"),
    (ev(user_id=...), "missing field 'user_id'"),
    (ev(user_id=""), "'user_id' is empty"),
    (ev(item_id=42), "'item_id' must be str"),
    (ev(ts="yesterday"), "'ts' must be int"),
    (ev(ts=True), "'ts' must be int"),
    (ev(event="like"), "unknown event type 'like'"),
    (ev(value="high"), "'value' must be int|float"),
])
def test_parse_event_rejects(raw, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_event(raw)


def test_parse_request_ok_dedupes_candidates_keeping_order():
    r = parse_request(req(candidates=["3", "1", "3", "2", "1"], k=2), max_candidates=10)
    assert r.candidates == ("3", "1", "2")
    assert r.k == 2 and r.request_id == "r1"


@pytest.mark.parametrize("raw, reason", [
    (req(candidates=[]), "'candidates' is empty"),
    (req(candidates="1,2"), "'candidates' must be list"),
    (req(candidates=["1", 2]), r"candidates\[1\] must be a non-empty string"),
    (req(candidates=[str(i) for i in range(11)]), "11 candidates exceed the limit of 10"),
    (req(k=0), "'k' must be >= 1"),
    (req(k=1.5), "'k' must be int"),
    (req(request_id=...), "missing field 'request_id'"),
])
def test_parse_request_rejects(raw, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_request(raw, max_candidates=10)


def test_dead_letter_shape_and_truncation():
    d = json.loads(dead_letter("t", 1, 7, "boom", b"\xffabc"))
    assert d == {"topic": "t", "partition": 1, "offset": 7, "error": "boom", "payload": "\ufffdabc"}
    big = json.loads(dead_letter("t", 0, 0, "e", "x" * (MAX_DEAD_LETTER_PAYLOAD_CHARS + 10)))
    assert big["payload"].endswith("...[truncated]")
    assert len(big["payload"]) < MAX_DEAD_LETTER_PAYLOAD_CHARS + 20
