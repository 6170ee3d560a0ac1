"""The job end to end: real PyFlink minicluster, real Kafka-protocol broker, real ONNX model."""
from __future__ import annotations

import collections
import time

import numpy as np
import onnxruntime as ort
import pytest

from jobs.config import JobConfig
from jobs.rerank_job import running
from models.artifact import load_artifact
from jobs.kafka_io import TopicReader, produce, wait_committed

pytestmark = pytest.mark.integration

N_USERS = 12
TIMEOUT_S = 60


def offline_scores(artifact, session, items, events, candidates) -> np.ndarray:
    """Score one request the plain way (dict lookups, B=1): an independent check of the job's path."""
    L = artifact.max_len
    items, events = items[-L:], events[-L:]
    h = [0] * (L - len(items)) + [artifact.item_to_index.get(i, 1) for i in items]
    e = [0] * (L - len(events)) + [artifact.event_to_index.get(x, 0) for x in events]
    c = [artifact.item_to_index.get(i, 1) for i in candidates]
    return session.run(None, {"hist_items": np.array([h], np.int64), "hist_events": np.array([e], np.int64),
                              "candidates": np.array([c], np.int64)})[0][0]


def by_request(records):
    out = collections.defaultdict(list)
    for r in records:
        out[r["value"]["request_id"]].append(r)
    return out


def strip_emitted(v):
    return {k: x for k, x in v.items() if k != "emitted_at"}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_job_end_to_end(broker, topics, model_dir, parallelism):
    artifact = load_artifact(model_dir)
    session = ort.InferenceSession(str(artifact.onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(parallelism)
    catalog = sorted(artifact.item_to_index)
    users = [f"user-{parallelism}-{u}" for u in range(N_USERS)]
    kinds = ["view", "click", "cart", "purchase", "rate"]

    # Phase 1 input: a history per user (user 0 stays cold); one unknown item id in the mix.
    sent = {u: [] for u in users}
    events = []
    for n, u in enumerate(users[1:], start=1):
        for j in range(n * 3):
            item = "not-in-vocab" if (n, j) == (1, 0) else str(rng.choice(catalog))
            ev = {"user_id": u, "item_id": item, "event": kinds[j % 5], "ts": 1_000_000 + j}
            events.append((u, ev))
            sent[u].append(ev)
    ends = produce(broker.bootstrap_servers, topics["user-events"], events)

    cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                    requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                    dead_letter_topic=topics["dead-letters"], group_id=f"it-{topics['ranked-lists']}",
                    model_dir=model_dir, parallelism=parallelism,
                    max_candidates=50, job_name=f"it-p{parallelism}", checkpoint_interval_ms=1000)

    def request(rid, user, n_cand=20, k=10):
        cands = [str(x) for x in rng.choice(catalog, size=n_cand, replace=False)] + ["unknown-candidate"]
        return user, {"request_id": rid, "user_id": user, "candidates": cands, "k": k, "ts": int(time.time() * 1000)}

    bad = [
        (None, b"\xff\xfe not utf8"),
        ("u", "{not json"),
        ("u", {"user_id": "u", "item_id": "1", "event": "teleport", "ts": 1}),
        ("u", {"user_id": "u", "item_id": 7, "event": "view", "ts": 1}),
        ("u", {"user_id": "u", "event": "view", "ts": 1}),
        ("someone-else", {"user_id": "u", "item_id": "1", "event": "view", "ts": 1}),
    ]
    bad_requests = [
        ("u", {"request_id": "bad-empty", "user_id": "u", "candidates": [], "ts": 1}),
        ("u", {"request_id": "bad-big", "user_id": "u", "candidates": [str(i) for i in range(51)], "ts": 1}),
        ("u", {"request_id": "bad-ts", "user_id": "u", "candidates": ["1"], "ts": "now"}),
    ]
    outputs = TopicReader(broker.bootstrap_servers, topics["ranked-lists"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    with running(cfg):
        # Events and requests are read by independent split readers: send the requests once the
        # job has committed (so consumed) every event.
        wait_committed(broker.bootstrap_servers, cfg.group_id, topics["user-events"], ends, TIMEOUT_S)
        produce(broker.bootstrap_servers, topics["user-events"], bad)
        phase1 = [request(f"r1-{u}", u) for u in users]
        produce(broker.bootstrap_servers, topics["rank-requests"], bad_requests + phase1)
        outputs.read_until(lambda rs: {f"r1-{u}" for u in users} <= set(by_request(rs)), TIMEOUT_S)

        # Phase 2: new events for user 3, then a request with the same candidates as before.
        u3 = users[3]
        first = next(v for _, v in phase1 if v["user_id"] == u3)
        new = [{"user_id": u3, "item_id": str(rng.choice(catalog)), "event": "purchase", "ts": 2_000_000 + j}
               for j in range(5)]
        ends = produce(broker.bootstrap_servers, topics["user-events"], [(u3, e) for e in new])
        sent[u3].extend(new)
        wait_committed(broker.bootstrap_servers, cfg.group_id, topics["user-events"], ends, TIMEOUT_S)
        produce(broker.bootstrap_servers, topics["rank-requests"],
                [(u3, {**first, "request_id": "r2-u3", "ts": int(time.time() * 1000)})])
        outputs.read_until(lambda rs: "r2-u3" in by_request(rs), TIMEOUT_S)
        dead.read_until(lambda rs: len(rs) >= len(bad) + len(bad_requests), 30)
    outputs.close()
    dead.close()

    answered = by_request(outputs.records)
    expected = {"r2-u3"} | {f"r1-{u}" for u in users}
    assert set(answered) == expected, "every request exactly one ranked list, nothing invented"
    for rid, copies in answered.items():
        assert all(strip_emitted(c["value"]) == strip_emitted(copies[0]["value"]) for c in copies), rid

    requests = {v["request_id"]: v for _, v in phase1} | {"r2-u3": {**first, "request_id": "r2-u3"}}
    for rid, req in requests.items():
        out = answered[rid][0]
        v = out["value"]
        assert out["key"] == req["user_id"]
        ids = [i["item_id"] for i in v["items"]]
        scores = [i["score"] for i in v["items"]]
        assert len(ids) == min(req["k"], len(req["candidates"])) == len(set(ids))
        assert set(ids) <= set(req["candidates"])
        assert scores == sorted(scores, reverse=True)
        history = sent[req["user_id"]] if rid != f"r1-{u3}" else sent[u3][:-len(new)]
        assert v["history_len"] == len(history)
        assert v["model_version"] == f"{artifact.name}/{artifact.version}"
        assert v["fallback"] is (len(history) == 0)
        expect = offline_scores(artifact, session, [e["item_id"] for e in history], [e["event"] for e in history],
                                req["candidates"])
        # The served list is exactly the top of the offline ranking, with the offline scores.
        by_item = dict(zip(req["candidates"], expect))
        np.testing.assert_allclose(scores, [by_item[i] for i in ids], atol=1e-5, rtol=0)
        assert sorted(expect, reverse=True)[:len(ids)] == pytest.approx(scores, abs=1e-5)

    before, after = answered[f"r1-{u3}"][0]["value"], answered["r2-u3"][0]["value"]
    assert after["history_len"] == before["history_len"] + len(new)
    assert [i["score"] for i in after["items"]] != [i["score"] for i in before["items"]], \
        "new events of the user changed the scores"

    reasons = [r["value"] for r in dead.records]
    assert len(reasons) == len(bad) + len(bad_requests)
    joined = " | ".join(r["error"] for r in reasons)
    for needle in ("not UTF-8", "invalid JSON", "unknown event type 'teleport'", "'item_id' must be str",
                   "missing field 'item_id'", "'candidates' is empty", "51 candidates exceed the limit of 50",
                   "'ts' must be int", "[key_mismatch]"):
        assert needle in joined
    assert {r["topic"] for r in reasons} == {topics["user-events"], topics["rank-requests"]}
    assert all(isinstance(r["offset"], int) and r["payload"] for r in reasons)
    assert {"key_mismatch", "missing_field", "bad_json"} <= {r["reason"] for r in reasons}
