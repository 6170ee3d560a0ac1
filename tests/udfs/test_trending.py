"""udfs/trending.py: decayed counts, the item-trends contract, the table and the blend (no JVM)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from udfs.errors import InvalidRecord
from udfs.trending import (DAY_MS, BlendParams, DecayedCount, TrendRecord, TrendTable, blend_batch, blend_scores,
                           decayed_counts, parse_trend_record, standardize, trend_key, trend_record)

H = DAY_MS


def test_decayed_count_halves_per_half_life():
    c = DecayedCount().add(1.0, 1_000, H).add(1.0, 1_000, H)
    assert c.value == 2.0
    assert c.value_at(1_000 + H, H) == pytest.approx(1.0)
    assert c.add(1.0, 1_000 + 2 * H, H).value == pytest.approx(1.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30 * DAY_MS), min_size=1, max_size=30))
def test_stream_of_adds_equals_offline_counts_in_any_order(times):
    """The trending job folds events one by one, out of order; models/temporal.py counts them in
    one bincount: both must give the same number."""
    c = DecayedCount()
    for t in times:
        c = c.add(1.0, t, H)
    at = max(times) + 12 * 3_600_000
    offline = decayed_counts(np.zeros(len(times), np.int64), np.array(times), 1, at, H)[0]
    assert c.value_at(at, H) == pytest.approx(offline, rel=1e-9)


def test_offline_counts_ignore_events_after_the_cut():
    counts = decayed_counts(np.array([0, 1, 1]), np.array([10, 10, 30]), 3, 20, H)
    assert counts[1] == pytest.approx(counts[0]) and counts[2] == 0


def test_record_round_trip_and_key():
    r = TrendRecord("item", "i1", 3.25, 1_000, H, events=4, emitted_at=2_000)
    assert parse_trend_record(trend_record(r), key=trend_key("item", "i1")) == r
    c = TrendRecord("category", "Drama", 1.0, 1_000, H)
    assert json.loads(trend_record(c))["category"] == "Drama"
    assert parse_trend_record(trend_record(c), key=b"category:Drama") == c


@pytest.mark.parametrize("value,reason", [
    ('{"item_id": "i", "score": -1, "at": 1000, "half_life_ms": 1}', "bad_trend"),
    ('{"item_id": "i", "score": 1, "at": 1000, "half_life_ms": 0}', "bad_trend"),
    ('{"item_id": "i", "score": 1, "at": 1000, "half_life_ms": 5, "scope": "user"}', "bad_trend"),
    ('{"item_id": "i", "score": 1, "half_life_ms": 5}', "missing_field"),
    ('{"score": 1, "at": 1000, "half_life_ms": 5}', "missing_field"),
    ('{"item_id": "i", "score": "1", "at": 1000, "half_life_ms": 5}', "wrong_type"),
    ('{"item_id": "i", "score": 1, "at": 1000, "half_life_ms": 5', "bad_json"),
])
def test_bad_records_are_refused_with_a_reason(value, reason):
    with pytest.raises(InvalidRecord) as err:
        parse_trend_record(value)
    assert err.value.reason == reason


def test_key_must_match():
    with pytest.raises(InvalidRecord) as err:
        parse_trend_record(trend_record(TrendRecord("item", "i1", 1.0, 1_000, H)), key=b"i2")
    assert err.value.reason == "key_mismatch"


def test_table_decays_to_request_time_and_forgets():
    t = TrendTable()
    t.update(TrendRecord("item", "a", 4.0, 0, H))
    t.update(TrendRecord("category", "Drama", 9.0, 0, H))
    assert len(t) == 1
    np.testing.assert_allclose(t.values_at(["a", "zz"], 2 * H), [1.0, 0.0])
    t.delete("category:Drama")
    t.delete("a")
    assert len(t) == 0 and not t.categories


def test_blend_weight_is_one_without_history_and_follows_the_signs():
    p = BlendParams(a=1.0, b=-1.0, c=0.5)
    w = p.weight(np.array([0, 1, 100, 100]), np.array([0, 0, 0, 30 * DAY_MS]))
    assert w[0] == 1.0
    assert w[1] > w[2]      # more history: more model
    assert w[3] > w[2]      # a longer gap: more trend


def test_blend_moves_between_model_and_trend():
    model = np.array([3.0, 2.0, 1.0])
    trend = np.array([0.0, 1.0, 50.0])
    all_model = BlendParams(a=-30.0)
    all_trend = BlendParams(a=30.0)
    s, flags = blend_scores(model, trend, 10, 0, all_model)
    assert list(np.argsort(-s)) == [0, 1, 2] and not flags.any()
    s, flags = blend_scores(model, trend, 10, 0, all_trend)
    assert list(np.argsort(-s)) == [2, 1, 0] and flags[2] and not flags[0]


def test_blend_batch_is_rowwise():
    rng = np.random.default_rng(0)
    model, trend = rng.normal(size=(4, 7)), rng.gamma(1.0, size=(4, 7))
    n, gap = np.array([0, 3, 30, 300]), np.array([0, DAY_MS, 0, 9 * DAY_MS])
    p = BlendParams(a=0.5, b=-0.3, c=0.2)
    batch, _, _ = blend_batch(model, trend, n, gap, p)
    for i in range(4):
        np.testing.assert_allclose(batch[i], blend_scores(model[i], trend[i], n[i], gap[i], p)[0], rtol=1e-6)


def test_standardize_constant_row_is_zero():
    np.testing.assert_array_equal(standardize(np.ones((2, 3))), np.zeros((2, 3)))


def test_blend_params_file_round_trip_and_refusal(tmp_path):
    p = BlendParams(a=1.5, b=-0.5, c=0.25, half_life_ms=H, tuned_on={"cut": "x"})
    p.save(tmp_path)
    assert BlendParams.load(tmp_path) == p
    assert BlendParams.load(tmp_path / "nowhere") is None
    (tmp_path / "blend.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a blend file"):
        BlendParams.load(tmp_path)
    with pytest.raises(ValueError):
        BlendParams(a=float("nan"))


def test_event_weights_default_to_one_and_refuse_typos():
    from udfs.trending import parse_event_weights

    types = ("view", "click", "purchase")
    assert parse_event_weights("", types) == {"view": 1.0, "click": 1.0, "purchase": 1.0}
    assert parse_event_weights(" purchase = 3 ,view=0,", types) == {"view": 0.0, "click": 1.0, "purchase": 3.0}
    for bad in ("buy=2", "view", "view=1,view=1", "view=-1", "view=inf", "view=x"):
        with pytest.raises(ValueError):
            parse_event_weights(bad, types)


def test_trend_categories_keep_valid_distinct_names_in_order():
    from udfs.trending import trend_categories

    assert trend_categories(["Drama", "Comedy", "Drama", " ", "", "a\x00b", "x" * 300, "Sci-Fi "]) == \
        ("Drama", "Comedy", "Sci-Fi ")
    assert trend_categories([]) == ()


def test_emit_time_is_one_interval_after_the_event_or_the_watermark():
    from udfs.trending import emit_time

    assert emit_time(1_000, -2**63, 60_000) == 61_000     # no watermark yet
    assert emit_time(1_000, 500, 60_000) == 61_000
    assert emit_time(1_000, 5_000, 60_000) == 65_000      # a late event: not a timer behind the watermark
