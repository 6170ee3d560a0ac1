"""A small stream replay through the real job: every request answered, served scores equal offline
scores, and live state beats the history frozen at the cut."""
import json

import pytest

from jobs.replay import DEFAULT_MODEL, parse_args, run

pytestmark = pytest.mark.integration


def test_small_replay_live_state_beats_frozen(tmp_path):
    # Served as a 50/50 A/B split of the same version: the report breaks the live metrics down per arm.
    result = run(parse_args(["--requests", "300", "--speedup", "0", "--max-in-flight", "20",
                             "--timeout", "120", "--out", str(tmp_path),
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
    saved = json.loads((tmp_path / "online.json").read_text())
    assert saved["arms"] == arms and (tmp_path / "online.png").stat().st_size > 10_000
