import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.history import UserHistory, append_event, apply_event
from udfs.records import EVENT_TYPES, UserEvent

DAY = 24 * 3600 * 1000


def e(item, event="view", ts=0):
    return UserEvent("u", item, event, ts)


def test_window_is_capped_and_keeps_arrival_order():
    h = UserHistory()
    for i in range(7):
        h = apply_event(h, e(str(i), ts=i), log_ts=100 + i, window=5, half_life_ms=DAY)
    assert h.items == ["2", "3", "4", "5", "6"]
    assert h.log_ts == [102, 103, 104, 105, 106] and h.last_ts == 6
    assert h.count == 7


def test_as_of_excludes_events_logged_after_the_request():
    h = UserHistory()
    for i in range(6):
        h = apply_event(h, e(str(i)), log_ts=10 * i, window=10, half_life_ms=DAY)
    s = h.as_of(log_ts=30, max_len=3)  # events logged at 0..30 count; 40, 50 came later
    assert (s.items, s.count) == (["1", "2", "3"], 4)
    assert h.as_of(log_ts=1000, max_len=10).items == [str(i) for i in range(6)]
    assert h.as_of(log_ts=-1, max_len=10) == h.as_of(log_ts=-5, max_len=3)
    assert h.as_of(log_ts=-1, max_len=10).count == 0


def test_decayed_counters_halve_per_half_life_and_ignore_out_of_order():
    h = apply_event(UserHistory(), e("a", "click", ts=0), 0, 10, DAY)
    h = apply_event(h, e("b", "click", ts=DAY), 0, 10, DAY)
    assert math.isclose(h.decayed["click"], 1.5)
    # An older event must not decay the counters backwards (or inflate them).
    h = apply_event(h, e("c", "purchase", ts=0), 0, 10, DAY)
    assert math.isclose(h.decayed["click"], 1.5) and h.decayed["purchase"] == 1.0
    assert math.isclose(h.decayed_counts(3 * DAY, DAY)["click"], 0.375)


@pytest.mark.parametrize("span_ms", [1, 10 * DAY, 400 * DAY])  # i32 deltas, and the i64 fallback
def test_bytes_round_trip(span_ms):
    h = UserHistory()
    for i, item in enumerate(["x", "ünïcode-id", "a" * 200, "", "42"]):
        h = apply_event(h, e(item, ("cart", "view", "rate", "click", "purchase")[i], ts=5 + i),
                        1_700_000_000_000 + i * span_ms, 10, DAY)
    assert UserHistory.from_bytes(h.to_bytes()) == h
    assert UserHistory.from_bytes(None) == UserHistory()
    assert UserHistory.from_bytes(UserHistory().to_bytes()) == UserHistory()


def test_bytes_are_compact():
    h = UserHistory()
    for i in range(50):
        h = apply_event(h, e(str(1000 + i), "rate", ts=i), 1_700_000_000_000 + i * 1000, 50, DAY)
    # 50 four-character ids: 4 + 1 + 1 bytes each (id, separator, type) + 4 (log_ts delta) + header
    assert len(h.to_bytes()) < 600


def test_nul_in_an_id_is_refused():
    h = apply_event(UserHistory(), e("a\x00b"), 0, 10, DAY)
    with pytest.raises(ValueError):
        h.to_bytes()


@given(st.lists(st.tuples(st.sampled_from(["a", "bb", "ünï", "", "4242"]), st.sampled_from(EVENT_TYPES),
                          st.integers(0, 10 * DAY), st.integers(-3 * DAY, 40 * DAY)), max_size=40),
       st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_append_event_on_bytes_equals_apply_event(steps, window):
    """The per-event fast path and the reference update rule store the same history."""
    blob, ref = None, UserHistory()
    for item, kind, ts, log_offset in steps:
        event = UserEvent("u", item, kind, ts)
        log_ts = 1_700_000_000_000 + log_offset
        blob = append_event(blob, event, log_ts, window, DAY)
        ref = apply_event(ref, event, log_ts, window, DAY)
        got = UserHistory.from_bytes(blob)
        assert (got.items, got.events, got.log_ts, got.count, got.last_ts, got.decayed_at) == \
            (ref.items, ref.events, ref.log_ts, ref.count, ref.last_ts, ref.decayed_at)
        assert got.decayed.keys() == ref.decayed.keys()
        assert all(math.isclose(got.decayed[k], ref.decayed[k], rel_tol=1e-12) for k in ref.decayed)


def test_custom_event_types_round_trip_and_append():
    """A deployment's own event names (--event-types): stored as positions in its list."""
    types = ("view", "click", "cart", "purchase", "rate", "wishlist", "share")
    blob = None
    for j, name in enumerate(["view", "wishlist", "share", "click"]):
        blob = append_event(blob, UserEvent("u", f"i{j}", name, 1_000 + j), 10 + j, 10, 3_600_000, types)
    h = UserHistory.from_bytes(blob, types)
    assert h.events == ["view", "wishlist", "share", "click"] and h.count == 4
    assert set(h.decayed) == {"view", "wishlist", "share", "click"}
    assert UserHistory.from_bytes(h.to_bytes(types), types) == h
    # The default list reads the same bytes for the contract's names (positions unchanged).
    plain = append_event(None, UserEvent("u", "i", "cart", 1), 1, 10, 3_600_000)
    assert UserHistory.from_bytes(plain, types).events == ["cart"]
