"""The scorer blends model and trend: item-trends -> the ranking job's broadcast table -> lists.

The ranking job runs on the PyFlink minicluster against the real broker; trend records are
produced directly on the item-trends topic (the trending job that writes them in production has
its own test). Checked: a user with no history gets the trending order (not a fallback), a user
with history gets exactly the offline blend of the same model's scores and the same trends, a
broken trend record is dead-lettered as `bad_trend`.
"""
from __future__ import annotations

import shutil
import time
import uuid

import numpy as np
import pytest

from jobs.config import JobConfig
from jobs.kafka_io import Producer, TopicReader, produce
from jobs.rerank_job import running as ranking_job
from models.artifact import load_artifact
from udfs.content import REASON_TRENDING
from udfs.scoring import OnnxScorer
from udfs.trending import DAY_MS, BlendParams, TrendRecord, TrendTable, blend_scores, trend_key, trend_record

pytestmark = pytest.mark.integration
TIMEOUT_S = 120
T0 = 1_700_000_000_000  # the trends' and events' clock (epoch ms)


def test_scores_blend_model_and_trend(broker, topics, model_dir, tmp_path):
    run = uuid.uuid4().hex[:8]
    # The served model with a blend file of its own: an even blend (w = 0.5) for every user.
    served = tmp_path / "model"
    shutil.copytree(model_dir, served, ignore=shutil.ignore_patterns("checkpoints", "*.int8.onnx"))
    params = BlendParams(a=0.0, b=0.0, c=0.0, half_life_ms=DAY_MS)
    params.save(served)
    artifact = load_artifact(str(served))
    vocab = sorted(artifact.item_to_index, key=artifact.item_to_index.get)
    history, candidates = vocab[:5], vocab[20:32]
    trends_topic = f"item-trends-{run}"
    broker.create_topics([trends_topic], partitions=1)
    counts = {c: float(n * n) for n, c in enumerate(candidates)}  # the last candidate trends most
    records = [TrendRecord("item", c, v, T0, DAY_MS, events=int(v)) for c, v in counts.items() if v]
    produce(broker.bootstrap_servers, trends_topic,
            [(trend_key(r.scope, r.name), trend_record(r)) for r in records]
            + [("broken", {"item_id": "broken", "score": -3, "at": T0, "half_life_ms": DAY_MS})])
    warm_user, cold_user = f"u-{run}", f"new-{run}"
    producer = Producer(broker.bootstrap_servers)
    for n, i in enumerate(history):  # logged at their own time: the request (later) sees them all
        ts = T0 - 3 * DAY_MS + n
        producer.send(topics["user-events"], warm_user, {"user_id": warm_user, "item_id": i, "event": "rate",
                                                         "ts": ts}, timestamp_ms=ts)
    producer.flush()
    cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                    requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                    dead_letter_topic=topics["dead-letters"], embeddings_topic="", trends_topic=trends_topic,
                    model_updates_topic=f"model-updates-{run}", group_id=f"it-blend-{run}", model_dir=str(served),
                    job_name=f"it-blend-{run}", checkpoint_interval_ms=1000)
    out = TopicReader(broker.bootstrap_servers, topics["ranked-lists"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    request_ts = T0 + DAY_MS // 2
    lists: dict[str, dict[int, dict]] = {warm_user: {}, cold_user: {}}  # user -> round -> ranked list

    def complete_round() -> int | None:
        """The first round whose cold list shows every trend record applied: each candidate with
        a record scores apart from the others (the one without a record scores lowest). Trend
        records reach the scorer one by one, after the job starts reading its inputs."""
        return next((n for n, v in sorted(lists[cold_user].items())
                     if len({i["score"] for i in v["items"]}) == len(candidates)), None)

    def done() -> bool:
        # parallelism 1: one scorer, so a warm request sent in a later round sees every trend too
        first = complete_round()
        return first is not None and any(n > first for n in lists[warm_user])

    try:
        with ranking_job(cfg):
            deadline, n = time.monotonic() + TIMEOUT_S, 0
            while time.monotonic() < deadline and not done():
                n += 1
                for user in (warm_user, cold_user):
                    producer.send(topics["rank-requests"], user, {
                        "request_id": f"{user}-{n}", "user_id": user, "candidates": candidates,
                        "k": len(candidates), "ts": request_ts}, timestamp_ms=request_ts)
                producer.flush()
                for r in out.poll(timeout_ms=500):
                    v = r["value"]
                    lists[v["user_id"]][int(v["request_id"].rsplit("-", 1)[1])] = v
            letters = dead.read_until(lambda rs: any(r["value"].get("reason") == "bad_trend" for r in rs), 60)
    finally:
        producer.close()
        out.close()
        dead.close()
    assert done(), f"the trends never all reached the scorer: {lists}"
    assert any(r["value"].get("reason") == "bad_trend" for r in letters)
    first = complete_round()
    got = {cold_user: lists[cold_user][first],
           warm_user: lists[warm_user][min(n for n in lists[warm_user] if n > first)]}

    cold = got[cold_user]
    assert cold["history_len"] == 0 and cold["trend_weight"] == 1.0 and not cold["fallback"]
    assert [i["item_id"] for i in cold["items"]][:11] == sorted(candidates[1:], key=lambda c: -counts[c])
    assert all(i["reason"]["kind"] == REASON_TRENDING for i in cold["items"][:3])

    warm = got[warm_user]
    assert warm["history_len"] == len(history) and warm["trend_weight"] == pytest.approx(0.5)
    table = TrendTable()
    for r in records:
        table.update(r)
    model = OnnxScorer(str(served), ["CPUExecutionProvider"]).score_one(history, ["rate"] * len(history), candidates)
    expected, _ = blend_scores(model, table.values_at(candidates, request_ts), len(history), 3 * DAY_MS, params)
    served_scores = {i["item_id"]: i["score"] for i in warm["items"]}
    np.testing.assert_allclose([served_scores[c] for c in candidates], expected, atol=1e-4)
