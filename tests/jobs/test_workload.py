import numpy as np

from jobs.workload import holdout_workload
from models.data import Interactions


def tiny_interactions():
    # user a: items 1,2,3 ; user b: items 4,5 ; user c: a single item (not eligible)
    return Interactions(users=np.array(["a", "b", "c"], dtype=object), offsets=np.array([0, 3, 5, 6]),
                        items=np.array([1, 2, 3, 4, 5, 6]), events=np.full(6, 5),
                        ratings=np.array([5, 4, 3, 2, 1, 5], dtype=np.float32),
                        timestamps=np.array([10, 20, 30, 15, 25, 5]))


def test_holdout_workload_hides_last_item_and_samples_unseen_negatives():
    w = holdout_workload(tiny_interactions(), n_items=10, n_users=5, n_negatives=4, history=10, seed=0)
    assert sorted(w.targets.values()) == ["3", "5"]
    assert [e["item_id"] for _, e in w.events] == ["1", "4", "2"]  # time order across users
    assert all(e["event"] == "rate" and e["ts"] % 1000 == 0 for _, e in w.events)
    for key, req in w.requests:
        seen = {"a": {"1", "2", "3"}, "b": {"4", "5"}}[key]
        target = w.targets[req["request_id"]]
        assert target in req["candidates"] and len(req["candidates"]) == 5
        assert not (set(req["candidates"]) - {target}) & seen


def test_history_limit_keeps_latest_events():
    w = holdout_workload(tiny_interactions(), n_items=10, n_users=5, n_negatives=2, history=1, seed=0)
    assert sorted(e["item_id"] for _, e in w.events) == ["2", "4"]
