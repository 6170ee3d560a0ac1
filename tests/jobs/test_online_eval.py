import numpy as np

from jobs.online_eval import delivery, latency_ms, ranking_quality, target_rank


def out(rid, items, received=0, emitted=0):
    return {"value": {"request_id": rid, "items": [{"item_id": i, "score": s} for i, s in items],
                      "emitted_at": emitted}, "received_at": received}


def test_delivery_accounting():
    outs = [out("r1", [("x", 1.0)]), out("r1", [("x", 1.0)], emitted=5), out("r2", [("x", 1.0)]),
            out("r2", [("y", 1.0)]), out("zz", [])]
    d = delivery(["r1", "r2", "r3"], outs)
    assert d == {"sent": 3, "answered": 2, "missing": 1, "duplicated": 2, "conflicting": 1, "unexpected": 1}


def test_target_rank_ties_count_against_target_and_unserved_is_last():
    items = [{"item_id": "a", "score": 2.0}, {"item_id": "t", "score": 1.0}, {"item_id": "b", "score": 1.0}]
    assert target_rank(items, "t") == 2
    assert target_rank(items, "missing") == 3


def test_ranking_quality_and_latency():
    outs = [out("r1", [("t", 3.0), ("x", 1.0)], received=110), out("r2", [("x", 3.0), ("t", 1.0)], received=250)]
    q = ranking_quality({"r1": "t", "r2": "t"}, outs)
    assert q["users"] == 2 and np.isclose(q["ndcg@10"], (1 + 1 / np.log2(3)) / 2) and q["mrr"] == 0.75
    lat = latency_ms({"r1": 100, "r2": 200}, outs)
    assert lat["n"] == 2 and lat["max"] == 50 and lat["p50"] == 30
