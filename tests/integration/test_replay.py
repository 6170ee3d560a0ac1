"""A small stream replay through the real job: every request answered, served scores equal offline
scores, live state beats the history frozen at the cut, and the feedback job beside it labels what
the users did with the lists (the new-item act is tests/integration/test_new_item.py's)."""
import json

import pytest

from jobs.replay import DEFAULT_MODEL, parse_args, run

pytestmark = pytest.mark.integration


def test_small_replay_live_state_beats_frozen(tmp_path):
    # Served as a 50/50 A/B split of the same version: the report breaks the live metrics down per arm.
    result = run(parse_args(["--requests", "300", "--speedup", "0", "--max-in-flight", "20",
                             "--timeout", "120", "--out", str(tmp_path), "--new-item-model", "none",
                             "--ab", f"a={DEFAULT_MODEL}:0.5,b={DEFAULT_MODEL}:0.5"]))
    d = result["delivery"]
    assert d["sent"] == 300 and d["answered"] == 300 and d["missing"] == 0 and d["conflicting"] == 0
    assert result["parity"]["requests_compared"] >= 250
    assert result["parity"]["max_abs_diff"] < 1e-5
    arms = result["arms"]
    assert arms["live"]["ndcg@10"] >= arms["frozen_at_cut"]["ndcg@10"]
    assert abs(arms["live"]["ndcg@10"] - result["offline_same_requests"]["ndcg@10"]) < 0.02
    by_arm = result["live_by_arm"]
    assert set(by_arm) == {"a (sasrec/cut2001)", "b (sasrec/cut2001)"}, by_arm.keys()
    assert sum(m["users"] for m in by_arm.values()) == d["answered"]
    assert all(m["users"] > 100 for m in by_arm.values())
    # The feedback job: candidates are items the user never touched, so the only action on a shown
    # item is the true next one; online CTR@10 / NDCG@10 of clicks are then exactly HR@10 / NDCG@10.
    fb = result["feedback"]
    assert set(fb["per_arm"]) == set(by_arm)
    assert fb["true_item_in_top10"] > 100 and fb["of_which_labelled_clicked"] == fb["true_item_in_top10"]
    for group, m in fb["per_arm"].items():
        assert m["lists"] == by_arm[group]["users"]
        assert m["ctr@10"] == pytest.approx(by_arm[group]["hr@10"], abs=1e-3)
        assert m["ndcg@10"] == pytest.approx(by_arm[group]["ndcg@10"], abs=1e-3)
    saved = json.loads((tmp_path / "online.json").read_text())
    assert saved["arms"] == arms and (tmp_path / "online.png").stat().st_size > 10_000
