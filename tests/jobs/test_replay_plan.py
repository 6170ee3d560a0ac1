import numpy as np

from jobs.replay_plan import build_plan
from models.data import Interactions

CUT = 100


def inter():
    # a: 2 events before the cut, 2 after; b: only after the cut (no request: nothing to freeze);
    # c: 1 before, 1 after. Timestamps interleave users after the cut.
    return Interactions(users=np.array(["a", "b", "c"], dtype=object), offsets=np.array([0, 4, 6, 8]),
                        items=np.array([1, 2, 3, 4, 5, 6, 7, 8]), events=np.full(8, 5),
                        ratings=np.ones(8, dtype=np.float32),
                        timestamps=np.array([10, 20, 110, 300, 105, 200, 50, 120]))


def test_plan_orders_steps_and_puts_each_request_just_before_its_interaction():
    p = build_plan(inter(), n_items=12, cut=CUT, n_requests=10, n_negatives=3, bootstrap_len=5,
                   speedup=10.0, max_gap_s=50.0, seed=1)
    kinds = [(s.kind, s.key, s.value.get("item_id") or p.targets[s.value["request_id"]]) for s in p.steps]
    assert kinds == [("event", "b", "5"), ("request", "a", "3"), ("event", "a", "3"), ("request", "c", "8"),
                     ("event", "c", "8"), ("event", "b", "6"), ("request", "a", "4"), ("event", "a", "4")]
    # clock: gaps 5, 10, 80->50 (capped), 100->50, divided by speedup 10
    assert [round(s.at_s, 2) for s in p.steps] == [0, 0.5, 0.5, 1.5, 1.5, 6.5, 11.5, 11.5]
    assert [e["item_id"] for _, e in p.bootstrap] == ["1", "2", "7"]  # pre-cut events, time order


def test_expected_and_frozen_histories_and_popularity():
    p = build_plan(inter(), n_items=12, cut=CUT, n_requests=10, n_negatives=3, bootstrap_len=5, seed=1)
    reqs = {p.targets[s.value["request_id"]]: s.value for s in p.requests}
    assert [e["item_id"] for e in p.expected_history[reqs["4"]["request_id"]]] == ["1", "2", "3"]
    assert [e["item_id"] for e in p.frozen_history["a"]] == ["1", "2"]
    assert "b" not in {s.key for s in p.requests}
    assert p.popularity == {"1": 1, "2": 1, "7": 1}


def test_candidates_are_target_plus_unseen_negatives():
    p = build_plan(inter(), n_items=12, cut=CUT, n_requests=10, n_negatives=5, bootstrap_len=5, seed=3)
    for s in p.requests:
        target = p.targets[s.value["request_id"]]
        seen = {"a": {"1", "2", "3", "4"}, "c": {"7", "8"}}[s.key]
        assert target in s.value["candidates"] and len(set(s.value["candidates"])) == 6
        assert not (set(s.value["candidates"]) - {target}) & seen


def test_request_limit_and_bootstrap_len():
    p = build_plan(inter(), n_items=12, cut=CUT, n_requests=1, n_negatives=2, bootstrap_len=1, seed=0)
    assert len(p.requests) == 1 and p.steps[-1].kind == "event"
    assert [e["item_id"] for e in p.frozen_history["a"]] == ["2"]
