import json
import logging

import pytest

from jobs.dedup import Deduplicator, dedup, fingerprint
from udfs.ranking import ranked_list


def answer(rid: str, emitted_at: int = 1, items=("a", "b"), user: str = "u1") -> dict:
    """A ranked-lists value as the job writes it (through JSON, as a consumer reads it)."""
    r = ranked_list(rid, user, list(items), [float(len(items) - i) for i in range(len(items))], k=None,
                    model_version="m/v", history_len=3, ts=1000, emitted_at=emitted_at)
    return json.loads(json.dumps(r))


def test_copies_differing_only_in_emitted_at_are_dropped():
    d = Deduplicator()
    assert d.accept(answer("r1", emitted_at=1))
    assert not d.accept(answer("r1", emitted_at=99))
    assert d.accept(answer("r2"))
    assert d.stats() == {"accepted": 2, "duplicates": 1, "conflicts": 0, "evicted": 0, "size": 2}


def test_fingerprint_ignores_key_order_and_emitted_at_only():
    a = answer("r1", emitted_at=5)
    assert fingerprint(dict(reversed(list(a.items())))) == fingerprint({**a, "emitted_at": 6})
    assert fingerprint(a) != fingerprint({**a, "history_len": 4})


def test_conflicting_duplicates_keep_the_first_and_are_counted(caplog):
    d = Deduplicator()
    first = answer("r1", items=("a", "b"))
    with caplog.at_level(logging.WARNING, logger="jobs.dedup"):
        assert d.accept(first)
        assert not d.accept(answer("r1", items=("b", "a")))
    assert (d.duplicates, d.conflicts) == (0, 1)
    assert "'r1' answered twice with different lists" in caplog.text


def test_exactly_one_list_per_request_after_a_replay():
    # What a consumer sees after a failure: lists 0..9, then the job restarts from a checkpoint
    # taken after list 5 and emits 6..9 again (later emitted_at), then goes on with 10..11.
    before = [answer(f"r{i}", emitted_at=100 + i) for i in range(10)]
    replayed = [answer(f"r{i}", emitted_at=200 + i) for i in range(6, 12)]
    out = list(dedup(before + replayed))
    assert [r["request_id"] for r in out] == [f"r{i}" for i in range(12)]
    assert out[7]["emitted_at"] == 107  # the first copy is the one passed on


def test_window_is_bounded_and_evicts_the_least_recently_seen():
    d = Deduplicator(max_entries=3)
    for rid in ("r1", "r2", "r3"):
        assert d.accept(answer(rid))
    assert not d.accept(answer("r1"))  # seen again: now the most recent
    assert d.accept(answer("r4"))      # evicts r2, the least recently seen
    assert len(d) == 3 and d.evicted == 1
    assert not d.accept(answer("r1"))
    assert d.accept(answer("r2"))      # forgotten: passes again (the documented limit of the window)


def test_rejects_what_is_not_a_ranked_list():
    with pytest.raises(ValueError, match="no request_id"):
        Deduplicator().accept({"user_id": "u1"})
    with pytest.raises(ValueError, match="max_entries"):
        Deduplicator(max_entries=0)
