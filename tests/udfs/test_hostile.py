"""Hostile input: the committed corpus replayed through the parsers, and property-based fuzzing.

Every record either parses (and then satisfies the contract's invariants) or raises InvalidRecord
with a known reason code; nothing else may escape, because anything else would fail the job.
"""
from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfs.errors import InvalidRecord
from udfs.records import (CONTROL_REASONS, DEFAULT_MAX_ID_BYTES, EVENT_TYPES, MAX_TS_MS, MIN_TS_MS, RankRequest, Reason, UserEvent,
                          check_key, parse_event, parse_request)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hostile_records.jsonl"
MAX_CANDIDATES = 1000  # the job's default --max-candidates
# No example database (it would write .hypothesis/ into the tree) and no deadline (2 shared cores).
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
REASONS = {r.value for r in Reason}


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def corpus_value(row: dict[str, Any]) -> bytes | None:
    """The Kafka value of a corpus row; `pad_to` appends spaces (valid JSON whitespace) up to a size,
    so the corpus stays small while holding 1 MB values."""
    if row["value_b64"] is None:
        return None
    value = base64.b64decode(row["value_b64"])
    return value + b" " * (row.get("pad_to", 0) - len(value))


def parse(topic: str, value: bytes | str | None, key: str | bytes | None = None) -> UserEvent | RankRequest:
    """What the job does with one record of `topic` (incl. the key check it is to wire)."""
    record = parse_event(value) if topic == "events" else parse_request(value, MAX_CANDIDATES)
    check_key(key, record)
    return record


def assert_contract(record: UserEvent | RankRequest, max_id_bytes: int = DEFAULT_MAX_ID_BYTES) -> None:
    """Invariants of every accepted record, relied on downstream (state, model, output)."""
    ids = [record.user_id] + ([record.item_id] if isinstance(record, UserEvent) else
                              [record.request_id, *record.candidates])
    for i in ids:
        assert isinstance(i, str) and i.strip() and len(i.encode("utf-8")) <= max_id_bytes
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in i)
    assert type(record.ts) is int and MIN_TS_MS <= record.ts <= MAX_TS_MS
    if isinstance(record, UserEvent):
        assert record.event in EVENT_TYPES
        assert record.value is None or (type(record.value) is float and math.isfinite(record.value))
    else:
        assert 1 <= len(record.candidates) <= MAX_CANDIDATES
        assert len(set(record.candidates)) == len(record.candidates)
        assert record.k is None or 1 <= record.k <= MAX_CANDIDATES


def outcome(topic: str, value: Any, key: Any = None) -> str | None:
    """None if accepted (contract checked), else the reason code; any other exception fails the test."""
    try:
        record = parse(topic, value, key)
    except InvalidRecord as exc:
        assert exc.reason in REASONS, exc
        assert str(exc).startswith(exc.step) and exc.detail
        return exc.reason
    assert_contract(record)
    return None


# --- the committed corpus -------------------------------------------------------------------------

def test_corpus_covers_both_topics_and_every_input_reason():
    rows = load_corpus()
    bad = [r for r in rows if r["expect_reason"] is not None]
    assert len(bad) >= 40
    assert {r["topic"] for r in bad} == {"events", "requests"}
    # Every input code but the catch-all appears at least once (control-topic codes: tests/udfs/test_control.py).
    assert {r["expect_reason"] for r in bad} == REASONS - {Reason.INVALID} - CONTROL_REASONS


@pytest.mark.parametrize("row", load_corpus(), ids=lambda r: f"{r['topic']}:{r['expect_reason']}:{r['note'][:40]}")
def test_corpus_record(row):
    value = corpus_value(row)
    if row["expect_reason"] is None:  # valid but odd: accepted
        assert outcome(row["topic"], value, row.get("key")) is None, row["note"]
        return
    with pytest.raises(InvalidRecord) as info:
        parse(row["topic"], value, row.get("key"))
    assert info.value.reason == row["expect_reason"], (row["note"], str(info.value))
    assert info.value.step in ("parse user-event", "parse rank-request", "check key")
    if "field" in row:  # the message names the field (and its position in a list)
        assert f"'{row['field']}'" in str(info.value) or f"{row['field']} " in str(info.value), str(info.value)


def test_corpus_odd_requests_are_normalized():
    rows = [r for r in load_corpus() if r["topic"] == "requests" and r["expect_reason"] is None]
    dup = next(r for r in rows if "duplicate candidates" in r["note"])
    assert parse("requests", corpus_value(dup)).candidates == ("3", "1", "2")


# --- fuzzing ----------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10 ** 40, max_value=10 ** 40)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
topics = st.sampled_from(["events", "requests"])


@FUZZ
@given(topic=topics, value=st.binary(max_size=300))
def test_random_bytes_only_raise_invalid_record(topic, value):
    outcome(topic, value)


@FUZZ
@given(topic=topics, value=json_values, ascii_only=st.booleans())
def test_random_json_only_raises_invalid_record(topic, value, ascii_only):
    # json.dumps writes NaN/Infinity as bare words: exactly what a careless producer sends.
    outcome(topic, json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(lambda s: s.strip())
timestamps = st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS)
events = st.fixed_dictionaries(
    {"user_id": ids, "item_id": ids, "event": st.sampled_from(EVENT_TYPES), "ts": timestamps},
    optional={"value": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10 ** 6, 10 ** 6)})
requests = st.fixed_dictionaries(
    {"request_id": ids, "user_id": ids, "candidates": st.lists(ids, min_size=1, max_size=30), "ts": timestamps},
    optional={"k": st.integers(min_value=1, max_value=MAX_CANDIDATES)})


@FUZZ
@given(value=events, ascii_only=st.booleans())
def test_valid_events_round_trip(value, ascii_only):
    e = parse_event(json.dumps(value, ensure_ascii=ascii_only).encode())
    assert (e.user_id, e.item_id, e.event, e.ts) == (value["user_id"], value["item_id"], value["event"], value["ts"])
    assert e.value == (None if "value" not in value else float(value["value"]))
    check_key(value["user_id"].encode(), e)  # the producer's key: accepted
    assert_contract(e)


@FUZZ
@given(value=requests, ascii_only=st.booleans())
def test_valid_requests_round_trip(value, ascii_only):
    r = parse_request(json.dumps(value, ensure_ascii=ascii_only), MAX_CANDIDATES)
    assert (r.request_id, r.user_id, r.ts, r.k) == (value["request_id"], value["user_id"], value["ts"], value.get("k"))
    assert r.candidates == tuple(dict.fromkeys(value["candidates"]))
    check_key(value["user_id"], r)
    assert_contract(r)


@FUZZ
@given(data=st.data(), topic=topics)
def test_mutated_records_are_accepted_within_contract_or_rejected(data, topic):
    """One valid record with fields dropped, replaced by random JSON, or added."""
    value = dict(data.draw(events if topic == "events" else requests))
    for name in list(value):
        action = data.draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "drop":
            del value[name]
        elif action == "replace":
            value[name] = data.draw(json_values)
    value.update(data.draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    outcome(topic, json.dumps(value))


@FUZZ
@given(data=st.data(), topic=topics)
def test_truncated_records_are_bad_json(data, topic):
    text = json.dumps(data.draw(events if topic == "events" else requests))
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    assert outcome(topic, text[:cut]) == Reason.BAD_JSON


# Tokens that break a record in the ways producers do: stray syntax, the numbers json accepts but JSON
# does not, escapes of control characters and lone surrogates, nesting.
tokens = st.sampled_from(['"', ",", ":", "{", "}", "[", "]", "NaN", "-Infinity", "1e999", "9" * 40, "null", "true",
                          "\\u0000", "\\ud800", "\\", " ", "\x7f", "\u00e9", "[" * 70, '"user_id": "x", '])


@FUZZ
@given(data=st.data(), topic=topics)
def test_corrupted_records_only_raise_invalid_record(data, topic):
    text = json.dumps(data.draw(events if topic == "events" else requests))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        start = data.draw(st.integers(min_value=0, max_value=len(text)))
        end = data.draw(st.integers(min_value=start, max_value=min(len(text), start + 4)))
        text = text[:start] + data.draw(tokens) + text[end:]
    outcome(topic, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(value=events, key=st.binary(max_size=12))
def test_key_must_be_null_or_the_user_id(value, key):
    e = parse_event(json.dumps(value))
    check_key(None, e)
    if key != value["user_id"].encode():
        with pytest.raises(InvalidRecord) as info:
            check_key(key, e)
        assert info.value.reason == Reason.KEY_MISMATCH
