"""Pseudonymization keys and values, and the forget-user record (pure parts; the job: tests/integration/test_identity.py)."""
from __future__ import annotations

import json

import pytest

from udfs.errors import ConfigError, InvalidRecord
from udfs.identity import pseudonym, read_key
from udfs.records import FORGET_EVENT, parse_event


def test_keys_come_from_a_file_or_the_environment_and_must_be_long_enough(tmp_path, monkeypatch):
    f = tmp_path / "k"
    f.write_bytes(b"0123456789abcdef0123\n")
    assert read_key(f"file:{f}") == b"0123456789abcdef0123"  # one trailing newline dropped
    monkeypatch.setenv("RERANK_TEST_KEY", "x" * 16)
    assert read_key("env:RERANK_TEST_KEY") == b"x" * 16
    f.write_bytes(b"short")
    for source, words in ((f"file:{f}", "at least 16"), (f"file:{tmp_path / 'none'}", "not found"),
                          ("env:RERANK_NO_SUCH_VAR", "is not set"), ("s3://bucket/key", "file:PATH or env:NAME")):
        with pytest.raises(ConfigError, match=words):
            read_key(source)


def test_pseudonyms_are_keyed_stable_and_distinct():
    k1, k2 = b"k" * 32, b"j" * 32
    assert pseudonym("alice", k1) == pseudonym("alice", k1)
    assert len(pseudonym("alice", k1)) == 32 and pseudonym("alice", k1) != pseudonym("bob", k1)
    assert pseudonym("alice", k1) != pseudonym("alice", k2)  # a new key: new pseudonyms (rotation)
    assert "alice" not in pseudonym("alice", k1)


def test_forget_record_needs_no_item_but_a_user_and_ts():
    e = parse_event(json.dumps({"user_id": "u", "event": FORGET_EVENT, "ts": 1_700_000_000_000}))
    assert (e.user_id, e.event, e.item_id) == ("u", FORGET_EVENT, "")
    with pytest.raises(InvalidRecord, match="user_id"):
        parse_event(json.dumps({"event": FORGET_EVENT, "ts": 1_700_000_000_000}))
    with pytest.raises(InvalidRecord, match="'ts'"):
        parse_event(json.dumps({"user_id": "u", "event": FORGET_EVENT}))
