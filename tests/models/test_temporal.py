"""models/temporal.py: requests at a cut, after a gap and in a session, the trend sweep, the tuning
(per kind, no kind given up for another), the CLI output.

Tiny synthetic logs only (no ML-1M); one tiny model trained in seconds for the end-to-end test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.eventlog import load_event_data
from models.metrics import rank_of_target
from models.temporal import (ARMS, KINDS, PROTOCOLS, WEIGHTS, Grid, Requests, cut_requests, gap_requests,
                             lookup_ranks, main, objective, sampled_weight_ranks, session_requests, trend_at, tune,
                             union, weight_ranks)
from tests.models.conftest import write_events
from udfs.trending import DAY_MS, BlendParams, blend_batch, decayed_counts, standardize

CUT = 100 * DAY_MS
T0 = 1_600_000_000_000


def _log(tmp_path: Path, rows: list[tuple[str, str, int]]):
    path = write_events(tmp_path / "events.jsonl",
                        [{"user_id": u, "item_id": i, "event": "rate", "ts": T0 + ts} for u, i, ts in rows])
    return load_event_data([path], dataset="toy").log


def _by_user(log_, req: Requests) -> dict[str, tuple[int, int, int]]:
    """user id -> (request ts offset, history_len, gap_ms)."""
    return {str(log_.users[u]): (int(t - T0), int(n), int(g)) for u, t, n, g in
            zip(req.user, req.ts, req.history_len, req.gap_ms)}


def test_cut_requests_first_after_the_cut_and_cold_users(tmp_path):
    d = DAY_MS
    log_ = _log(tmp_path, [("a", "i1", 1 * d), ("a", "i2", 2 * d), ("a", "i3", 110 * d), ("a", "i4", 111 * d),
                           ("b", "i1", 105 * d), ("b", "i2", 106 * d),      # only after the cut: cold
                           ("c", "i5", 3 * d),                               # only before: no request
                           ("e", "i3", 100 * d)])                            # exactly at the cut
    got = _by_user(log_, cut_requests(log_, T0 + CUT))
    assert got == {"a": (110 * d, 2, 108 * d), "b": (105 * d, 0, 0), "e": (100 * d, 0, 0)}
    until = _by_user(log_, cut_requests(log_, T0 + CUT, until_ms=T0 + 106 * d))
    assert set(until) == {"b", "e"}  # a's first post-cut event is after `until`


def test_gap_requests_need_a_previous_event_at_least_the_gap_earlier(tmp_path):
    d = DAY_MS
    log_ = _log(tmp_path, [("a", "i1", 90 * d), ("a", "i2", 110 * d), ("a", "i3", 140 * d),  # straddles the cut
                           ("b", "i1", 105 * d), ("b", "i2", 106 * d),                      # first event: no return
                           ("e", "i1", 101 * d), ("e", "i2", 103 * d), ("e", "i3", 113 * d),  # exactly 10 days
                           ("f", "i1", 101 * d), ("f", "i2", 110 * d)])                     # 9 days: not enough
    got = _by_user(log_, gap_requests(log_, T0 + CUT, 10 * DAY_MS))
    assert got == {"a": (110 * d, 1, 20 * d), "e": (113 * d, 2, 10 * d)}
    cut = cut_requests(log_, T0 + CUT)
    merged = union(cut, gap_requests(log_, T0 + CUT, 10 * DAY_MS))
    assert len(merged) == len(cut) + 1 and np.all(np.diff(merged.rows) > 0)  # a's request is in both sets


def _rows(log_, req: Requests) -> list[tuple[str, int, int, int]]:
    """(user id, request ts offset, history_len, gap_ms) of every request, in log order."""
    return [(str(log_.users[u]), int(t - T0), int(n), int(g)) for u, t, n, g in
            zip(req.user, req.ts, req.history_len, req.gap_ms)]


def test_session_requests_follow_a_recent_event_with_the_session_in_the_history(tmp_path):
    d, m = DAY_MS, 60_000
    log_ = _log(tmp_path, [("a", "i1", 90 * d), ("a", "i2", 100 * d - 10 * m),  # before the cut
                           ("a", "i3", 100 * d + 20 * m),                       # 30 min after i2: across the cut
                           ("a", "i4", 100 * d + 30 * m),
                           ("a", "i5", 100 * d + 180 * m),                      # 150 min: a new session
                           ("a", "i6", 100 * d + 239 * m),                      # 59 min
                           ("b", "i1", 105 * d), ("b", "i2", 105 * d + 60 * m),  # first event; exactly 60 min
                           ("c", "i1", 50 * d), ("c", "i2", 50 * d + m),         # before the cut only
                           ("e", "i1", 110 * d), ("e", "i2", 110 * d + m), ("e", "i3", 110 * d + m)])  # same ms
    got = _rows(log_, session_requests(log_, T0 + CUT, 60 * m, n_max=100, per_user=10, seed=0))
    assert got == [("a", 100 * d + 20 * m, 2, 30 * m), ("a", 100 * d + 30 * m, 3, 10 * m),
                   ("a", 100 * d + 239 * m, 5, 59 * m), ("e", 110 * d + m, 1, m), ("e", 110 * d + m, 2, 0)]
    assert [r[0] for r in _rows(log_, session_requests(log_, T0 + CUT, 60 * m, 100, 10, 0, T0 + 105 * d))] == ["a"] * 3
    # At most per_user per user and n_max in all, seeded; across seeds every eligible event can be drawn.
    one_each = _rows(log_, session_requests(log_, T0 + CUT, 60 * m, n_max=100, per_user=1, seed=3))
    assert sorted(r[0] for r in one_each) == ["a", "e"]
    assert one_each == _rows(log_, session_requests(log_, T0 + CUT, 60 * m, n_max=100, per_user=1, seed=3))
    assert len(session_requests(log_, T0 + CUT, 60 * m, n_max=2, per_user=10, seed=0)) == 2
    drawn = {r for seed in range(40) for r in _rows(log_, session_requests(log_, T0 + CUT, 60 * m, 100, 1, seed))}
    assert drawn == set(got)
    # No session request is a user's first event or more than the window after the previous one.
    merged = union(cut_requests(log_, T0 + CUT), session_requests(log_, T0 + CUT, 60 * m, 100, 10, 0))
    assert len(merged) == 2 + 1 + 5 - 1 and np.all(np.diff(merged.rows) > 0)  # a's cut request is a session one


def test_trend_at_request_time_equals_brute_force_decayed_counts():
    rng = np.random.default_rng(3)
    n_items, h = 7, 6 * 3_600_000
    ts = rng.integers(0, 5 * DAY_MS, 400) // 60_000 * 60_000  # shared timestamps
    items = rng.integers(0, n_items, 400)
    at = np.concatenate([rng.choice(ts, 10), rng.integers(0, 6 * DAY_MS, 10), [0]])  # some at an event's ts
    got = trend_at(items, ts, n_items, at, h)
    cols = rng.integers(0, n_items, (len(at), 3))
    got_cols = trend_at(items, ts, n_items, at, h, columns=cols)
    for r, t in enumerate(at):
        before = ts < t  # strictly before the request
        want = decayed_counts(items[before], ts[before], n_items, int(t), h)
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_cols[r], want[cols[r]], rtol=1e-9, atol=1e-12)


def test_tuning_finds_the_planted_half_life_and_weights():
    """Short histories: the trend at 1 day knows the true item, the model prefers a decoy; long
    histories: the other way round. Only half-life 1 d with w high for short, low for long is perfect."""
    rng = np.random.default_rng(0)
    e, c = 200, 21
    short = np.arange(e) % 2 == 0
    req = Requests(np.arange(e), np.arange(e), np.zeros(e, np.int64), np.where(short, 2, 100), np.zeros(e, np.int64))
    model, good_trend = rng.normal(size=(e, c)), rng.uniform(0, 1, (e, c))
    model[~short, 0], model[short, 1] = 8.0, 8.0         # model: target for long, decoy for short
    good_trend[short, 0], good_trend[~short, 1] = 100.0, 100.0  # trend: target for short, decoy for long
    trends = {6 * 3_600_000: rng.uniform(0, 1, (e, c)), DAY_MS: good_trend, 7 * DAY_MS: rng.uniform(0, 1, (e, c))}
    grid = Grid(tuple(trends), a=(0.0, 2.0, 4.0), b=(-2.0, 0.0), c=(0.0, 1.0))
    tables = {h: {"uniform100": sampled_weight_ranks(model, t)} for h, t in trends.items()}
    best, score, per_h = tune(tables, req, grid)
    assert best.half_life_ms == DAY_MS and (best.a, best.b, best.c) == (4.0, -2.0, 0.0)
    day = per_h[list(trends).index(DAY_MS)]
    assert day["valid_blend"] == {"all": {"uniform100": 1.0}} and day["valid_worst_lift"] > 0
    assert [r["half_life_ms"] for r in per_h] == list(trends) and max(r["valid_objective"] for r in per_h) == pytest.approx(score, abs=1e-6)
    w = best.weight(np.array([2, 100]), np.array([0, 0]))
    assert w[0] > 0.5 > w[1]


def _kinds_case(e: int = 100, c: int = 21):
    """Three kinds of requests with the same history length: the model knows the true item of the
    session requests (2 minutes after the previous event) and prefers a decoy elsewhere; the trend
    knows the true item of the cut and gap requests (60 days after the previous event), not of the
    session ones. Only the gap can tell them apart."""
    rng = np.random.default_rng(0)
    n = 3 * e
    sets = {"cut": np.arange(e), "gap": np.arange(e, 2 * e), "session": np.arange(2 * e, n)}
    session = np.arange(n) >= 2 * e
    gap = np.where(session, 2 * 60_000, 60 * DAY_MS)
    req = Requests(np.arange(n), np.arange(n), np.zeros(n, np.int64), np.full(n, 50), gap.astype(np.int64))
    model, trend = rng.normal(size=(n, c)), rng.uniform(0, 1, (n, c))
    model[session, 0], model[~session, 1] = 8.0, 8.0
    trend[~session, 0], trend[session, 1] = 100.0, 100.0
    return model, trend, req, sets


def test_tuning_leaves_the_model_alone_in_a_session_and_the_trend_after_a_gap():
    model, trend, req, sets = _kinds_case()
    grid = Grid((DAY_MS,), a=(-6.0, -3.0, 0.0, 3.0), b=(0.0,), c=(0.0, 1.0, 2.0, 3.0))
    best, _, per_h = tune({DAY_MS: {"uniform100": sampled_weight_ranks(model, trend)}}, req, grid, sets)
    assert per_h[0]["valid_blend"] == {k: {"uniform100": 1.0} for k in ("cut", "gap", "session")}
    w = best.weight(np.array([50, 50]), np.array([2 * 60_000, 60 * DAY_MS]))
    assert w[0] < 0.05 and w[1] > 0.5


def test_objective_puts_the_worst_cell_first_and_weighs_cells_relatively():
    model = {("cut", "u"): 0.30, ("cut", "full"): 0.02, ("session", "u"): 0.50}
    trend = {("cut", "u"): 0.35, ("cut", "full"): 0.08, ("session", "u"): 0.20}
    beats_all = {("cut", "u"): 0.36, ("cut", "full"): 0.088, ("session", "u"): 0.51}
    key, lifts = objective(beats_all, model, trend)
    assert key[0] == 0.0 and lifts[("cut", "full")] == pytest.approx(0.1) and key[1] == pytest.approx(
        np.mean([0.01 / 0.35, 0.1, 0.01 / 0.5]))
    # A large absolute gain on uniform100 does not buy a loss in full ranking.
    loses_full = {("cut", "u"): 0.45, ("cut", "full"): 0.079, ("session", "u"): 0.60}
    key2, lifts2 = objective(loses_full, model, trend)
    assert key2[0] == pytest.approx(-0.001 / 0.08) == lifts2[("cut", "full")] and key2[1] > key[1]
    assert key > key2


def test_weight_ranks_are_the_ranks_of_the_blend_at_each_weight():
    """What the tuner looks up equals what the evaluation ranks (blend_batch, ties against the
    target), sampled and full (a mask of counted items, the target anywhere)."""
    rng = np.random.default_rng(5)
    e, c = 40, 30
    model = rng.normal(size=(e, c)).round(1)  # rounded: ties happen
    trend = rng.integers(0, 5, (e, c)).astype(float)
    hist, gap = rng.integers(1, 300, e), rng.integers(0, 90 * DAY_MS, e)
    target = rng.integers(0, c, e)
    counted = rng.uniform(size=(e, c)) > 0.3
    counted[np.arange(e), target] = False
    table_s, table_f = sampled_weight_ranks(model, trend), weight_ranks(model, trend, target, counted)
    assert table_s.shape == table_f.shape == (e, len(WEIGHTS))
    # Weights the grid holds exactly: 0 (the model alone), 0.5, and 1 (no history: the trend alone).
    for params, history in [(BlendParams(-60.0, 0.0, 0.0, DAY_MS), hist), (BlendParams(0.0, 0.0, 0.0, DAY_MS), hist),
                            (BlendParams(0.0, 0.0, 0.0, DAY_MS), np.zeros(e, np.int64))]:
        scores = blend_batch(model, trend, history, gap, params)[0]
        w = params.weight(history, gap)
        np.testing.assert_array_equal(lookup_ranks(table_s, w), rank_of_target(scores[:, 0], scores[:, 1:]))
        np.testing.assert_array_equal(lookup_ranks(table_f, w),
                                      rank_of_target(scores[np.arange(e), target], scores, counted))
    # Every weight of the grid, against scoring and ranking at that weight directly (continuous
    # scores: no exact crossing at a grid point).
    model, trend = rng.normal(size=(e, c)), rng.exponential(3.0, (e, c))
    table = weight_ranks(model, trend, target, counted, chunk_bytes=4096)  # several chunks
    z_model, z_trend = standardize(model), standardize(np.log1p(trend))
    for k, w in enumerate(WEIGHTS):
        scores = (1 - w) * z_model + w * z_trend
        np.testing.assert_array_equal(table[:, k], rank_of_target(scores[np.arange(e), target], scores, counted))


def _sessions_log(tmp_path: Path) -> Path:
    """60 users walking a 40-item catalogue in sessions spread over 60 days; some start late (cold)."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(60):
        day = float(rng.uniform(0, 20)) if u % 6 else float(rng.uniform(46, 55))
        item = int(rng.integers(40))
        for _ in range(int(rng.integers(2, 5))):
            for k in range(int(rng.integers(3, 8))):
                rows.append({"user_id": f"u{u}", "item_id": f"sku-{item % 40}", "event": "rate",
                             "ts": T0 + int(day * DAY_MS) + 60_000 * k})
                item += 1
            day += float(rng.uniform(1, 15))
    rows.sort(key=lambda r: r["ts"])
    return write_events(tmp_path / "sessions.jsonl", rows)


def test_cli_writes_blend_and_metrics(tmp_path, caplog):
    from models.train import TrainConfig, run

    events = _sessions_log(tmp_path)
    valid_cut, cut = T0 + 30 * DAY_MS, T0 + 45 * DAY_MS
    data = load_event_data([events], dataset="toy", train_until_ms=valid_cut)
    model = run(data, tmp_path / "toy" / "v0", {"max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 1,
                                                 "dropout": 0.1},
                TrainConfig(epochs=1, batch_size=16, lr=5e-3, threads=1, train_until_ms=valid_cut), "toy", "v0",
                progress=False)
    test_model = tmp_path / "toy" / "test"
    shutil.copytree(model, test_model)
    (test_model / "metrics.json").write_text(json.dumps({"toy": {"kept": 1}}))
    out = tmp_path / "out"
    rc = main(["--events", str(events), "--model", str(test_model), "--valid-model", str(model), "--cut", str(cut),
               "--valid-cut", str(valid_cut),
               "--gap-days", "3", "--session-minutes", "30", "--session-max", "50", "--session-per-user", "2",
               "--half-lives", "6h,1d", "--a-grid=-1,1", "--b-grid=-0.5,0",
               "--c-grid=0", "--out", str(out), "--write"])
    assert rc == 0
    params = BlendParams.load(test_model)
    assert params is not None and params.half_life_ms in (6 * 3_600_000, DAY_MS)
    assert params.tuned_on["model"] == str(model) and params.tuned_on["objective"]
    assert params.tuned_on["valid_cut_ms"] == valid_cut and "valid_objective" in params.tuned_on
    assert set(params.tuned_on["n_requests_by_kind"]) == set(KINDS) and params.tuned_on["session_minutes"] == 30
    metrics = json.loads((test_model / "metrics.json").read_text())
    assert metrics["toy"] == {"kept": 1}  # existing keys kept
    temporal = metrics["temporal"]
    for arm in ARMS:
        for kind in KINDS:
            for proto in PROTOCOLS:
                assert set(temporal[arm][kind][proto]) >= {"ndcg@10", "hr@10", "mrr", "users"}
    assert temporal["requests"]["cut"]["requests"] > 0 and temporal["requests"]["cut"]["cold"] > 0
    assert temporal["requests"]["gap"]["requests"] > 0
    assert 0 < temporal["requests"]["session"]["before_dropping"] <= 50
    assert temporal["requests"]["session"]["median_gap_days"] < 30 / 1440 and temporal["settings"]["session_max"] == 50
    assert [r["half_life"] for r in temporal["half_life_sensitivity"]] == ["6h", "1d"]
    assert set(temporal["popular_own_half_life"]) >= {"half_life_ms", "valid_ndcg@10", *KINDS}
    sens = temporal["half_life_sensitivity"][0]
    assert {"valid_objective", "valid_worst_lift", "valid_lift", "valid_blend"} <= set(sens)
    assert set(sens["valid_lift"]) == set(KINDS) and set(sens["valid_lift"]["cut"]) == set(PROTOCOLS)
    assert temporal["settings"]["cut_ms"] == cut and temporal["blend_params"]["half_life_ms"] == params.half_life_ms
    full = json.loads((out / "temporal.json").read_text())
    assert {"validation", "by_history_len", "tuned_on"} <= set(full)
    assert full["by_history_len"]["cut"]["uniform100"][0]["bucket"] == "0"  # the cold users
    assert (out / "temporal.png").is_file()
