import json
import math

import pytest

from udfs.ranking import ranked_list, to_json, top_k


def test_top_k_sorted_desc_and_stable_on_ties():
    out = top_k(["a", "b", "c", "d"], [0.1, 0.5, 0.5, -1.0], k=3)
    assert [x["item_id"] for x in out] == ["b", "c", "a"]
    assert [x["score"] for x in out] == [0.5, 0.5, pytest.approx(0.1)]


def test_top_k_k_larger_than_candidates_and_length_mismatch():
    assert len(top_k(["a", "b"], [1, 2], k=10)) == 2
    with pytest.raises(ValueError):
        top_k(["a"], [1, 2], k=1)


def test_ranked_list_contract():
    r = ranked_list("r", "u", ["a", "b", "c"], [0.2, 0.9, 0.1], k=2, model_version="m/v1",
                    history_len=3, ts=1, emitted_at=2, arm="treatment")
    assert set(r) == {"request_id", "user_id", "items", "model_version", "arm", "history_len", "fallback", "ts",
                      "emitted_at"}
    assert r["arm"] == "treatment"
    assert [i["item_id"] for i in r["items"]] == ["b", "a"] and r["fallback"] is False
    assert json.loads(to_json(r)) == r


@pytest.mark.parametrize("scores", [None, [0.1, math.nan, 0.3]])
def test_unscorable_request_falls_back_to_request_order(scores):
    r = ranked_list("r", "u", ["a", "b", "c"], scores, k=3, model_version="m", history_len=2, ts=0, emitted_at=0)
    assert r["fallback"] is True
    assert [i["item_id"] for i in r["items"]] == ["a", "b", "c"]


def test_cold_user_is_flagged():
    r = ranked_list("r", "u", ["a"], [1.0], k=1, model_version="m", history_len=0, ts=0, emitted_at=0)
    assert r["fallback"] is True
