"""The job on a real standalone Flink cluster: `flink run`, stop-with-savepoint, resume, metrics.

Slow (about 3-4 minutes on 2 cores): `make test-slow` or
`.venv/bin/python -m pytest -m slow tests/cluster -v`.

JobManager + TaskManager from build/flink-it (jobs/cluster.py, free loopback ports), the session's
Kafka-protocol broker, real MovieLens-1M behavior. Job 1 (parallelism 1, model v1) folds the first
part of each user's history into state and answers requests; it is stopped with a savepoint;
requests sent while no job runs are answered by job 2, resumed from the savepoint at parallelism
2, with a new model version and the RocksDB state backend; then the rest of the histories and more requests. Every request must
be answered, with the history_len and scores that continuing state implies, and the TaskManager's
Prometheus endpoint must show the job's own metrics.
"""
from __future__ import annotations

import collections
import http.client
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from jobs.cluster import FLINK_CONF
from jobs.kafka_io import TopicReader, produce, wait_committed
from jobs.workload import holdout_workload
from models.artifact import load_artifact
from models.data import load_ml1m
from tests.integration.test_pipeline import offline_scores

pytestmark = pytest.mark.slow

N_USERS = 16
TAIL = 5            # events per user held back until after the savepoint
TIMEOUT_S = 120


@pytest.fixture
def upgraded_model(tmp_path, model_dir) -> Path:
    """The same weights under a new version name: what a model upgrade across a savepoint looks like."""
    target = tmp_path / "sasrec" / "v1-resumed"
    target.mkdir(parents=True)
    for name in ("model.onnx", "vocab.json", "metrics.json"):
        if (Path(model_dir) / name).is_file():
            shutil.copy2(Path(model_dir) / name, target / name)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "version": "v1-resumed"}))
    return target


def by_request(records):
    out = collections.defaultdict(list)
    for r in records:
        out[r["value"]["request_id"]].append(r["value"])
    return out


def scrape(url: str, attempts: int = 5) -> dict[str, list[tuple[str, float]]]:
    """Prometheus text format -> {metric name: [(labels, value)]}.

    Retried: the reporter's HTTP server once closed a connection without a response mid-test.
    """
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            break
        except (OSError, http.client.HTTPException):
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    out: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1)].append((m.group(2) or "", float(m.group(3))))
    return out


def total(metrics, suffix: str) -> float:
    """Sum over subtasks of the job's metric whose name ends with `suffix`."""
    found = [v for name, series in metrics.items() if name.endswith(suffix) for _, v in series]
    assert found, f"no metric *{suffix} on the Prometheus endpoint"
    return sum(found)


def test_submit_savepoint_resume(cluster, broker, topics, model_dir, upgraded_model, tmp_path):
    artifact = load_artifact(model_dir)
    session = ort.InferenceSession(str(artifact.onnx_path), providers=["CPUExecutionProvider"])
    data = load_ml1m()
    work = holdout_workload(data.interactions, len(data.items.titles), N_USERS, 50, 30, seed=3)
    per_user: dict[str, list[dict]] = collections.defaultdict(list)
    for user, ev in work.events:
        per_user[user].append(ev)
    users = sorted(per_user)
    head = {u: evs[:-TAIL] for u, evs in per_user.items()}
    tail = {u: evs[-TAIL:] for u, evs in per_user.items()}
    requests = dict(work.requests)  # user -> request (one per user)
    group = f"cluster-it-{topics['ranked-lists']}"

    # Job 2 keeps its state in RocksDB: a canonical savepoint of the hashmap backend restores into it.
    rocksdb_conf = tmp_path / "flink-conf-rocksdb.yaml"
    rocksdb_conf.write_text(FLINK_CONF.read_text().replace("state.backend.type: hashmap",
                                                           "state.backend.type: rocksdb"))
    assert "state.backend.type: rocksdb" in rocksdb_conf.read_text()

    def job_args(model: Path, parallelism: int, name: str, flink_conf: Path = FLINK_CONF) -> list[str]:
        return ["--flink-conf", str(flink_conf), "--bootstrap-servers", broker.bootstrap_servers,
                "--events-topic", topics["user-events"], "--requests-topic", topics["rank-requests"],
                "--output-topic", topics["ranked-lists"], "--dead-letter-topic", topics["dead-letters"],
                "--group-id", group, "--model-dir", str(model), "--parallelism", str(parallelism),
                "--checkpoint-interval-ms", "1000", "--jars", "", "--job-name", name]

    def send_requests(phase: str) -> set[str]:
        batch = [(u, {**requests[u], "request_id": f"{phase}-{u}", "ts": int(time.time() * 1000)}) for u in users]
        produce(broker.bootstrap_servers, topics["rank-requests"], batch)
        return {v["request_id"] for _, v in batch}

    outputs = TopicReader(broker.bootstrap_servers, topics["ranked-lists"])
    answered = lambda ids: lambda rs: ids <= set(by_request(rs))  # noqa: E731
    t0 = time.monotonic()
    timings = {}

    # Job 1: model v1, parallelism 1. State from the head of each history, then one request each.
    ends = produce(broker.bootstrap_servers, topics["user-events"],
                   [(u, e) for u, e in work.events if e in head[u]])
    job1 = cluster.submit(job_args(Path(model_dir), 1, "rerank-it-1"))
    cluster.wait_job_running(job1, TIMEOUT_S)
    timings["job1_running_s"] = time.monotonic() - t0
    wait_committed(broker.bootstrap_servers, group, topics["user-events"], ends, TIMEOUT_S)
    r1 = send_requests("r1")
    outputs.read_until(answered(r1), TIMEOUT_S, settle_s=0)
    # Requests racing the stop: answered before it or after the resume, never lost.
    edge = send_requests("edge")
    savepoint = cluster.stop_with_savepoint(job1, tmp_path / "savepoints")
    timings["savepoint_s"] = time.monotonic() - t0
    assert cluster.job_status(job1) == "FINISHED"
    assert Path(savepoint.removeprefix("file:"), "_metadata").is_file()

    # While no job runs: more requests. Then job 2 from the savepoint, new model, parallelism 2.
    down = send_requests("down")
    job2 = cluster.submit(job_args(upgraded_model, 2, "rerank-it-2", rocksdb_conf), savepoint=savepoint)
    try:
        cluster.wait_job_running(job2, TIMEOUT_S)
        timings["job2_running_s"] = time.monotonic() - t0
        backend = cluster.rest(f"/jobs/{job2}/checkpoints/config").get("state_backend")
        assert backend == "EmbeddedRocksDBStateBackend", backend
        outputs.read_until(answered(edge | down), TIMEOUT_S, settle_s=0)
        ends = produce(broker.bootstrap_servers, topics["user-events"], [(u, e) for u, e in work.events
                                                                         if e in tail[u]])
        wait_committed(broker.bootstrap_servers, group, topics["user-events"], ends, TIMEOUT_S)
        r2 = send_requests("r2")
        outputs.read_until(answered(r2), TIMEOUT_S)
        timings["answered_s"] = time.monotonic() - t0
        # Python metrics reach the TaskManager's registry at the end of each bundle / checkpoint.
        deadline = time.monotonic() + 30
        while True:
            metrics = scrape(cluster.spec.metrics_url("taskmanager"))
            ready = [n for n in metrics if n.endswith("rerank_ranked_lists")]
            if (ready and total(metrics, "rerank_ranked_lists") >= 2 * N_USERS) or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        outputs.close()
    print("timings:", {k: round(v, 1) for k, v in timings.items()})

    got = by_request(outputs.records)
    assert set(got) == r1 | edge | down | r2, "every request answered, nothing invented"
    for rid, copies in got.items():
        strip = [{k: v for k, v in c.items() if k != "emitted_at"} for c in copies]
        assert all(s == strip[0] for s in strip), f"conflicting answers for {rid}"

    new_version = f"{artifact.name}/v1-resumed"
    for phase, history, versions in (("r1", head, {f"{artifact.name}/{artifact.version}"}),
                                     ("edge", head, {f"{artifact.name}/{artifact.version}", new_version}),
                                     ("down", head, {new_version}),
                                     ("r2", {u: head[u] + tail[u] for u in users}, {new_version})):
        for u in users:
            out = got[f"{phase}-{u}"][0]
            hist = history[u]
            # State continued across the savepoint: job 2 starts from the users' histories.
            assert out["history_len"] == len(hist), (phase, u)
            assert out["model_version"] in versions, (phase, u, out["model_version"])
            cands = requests[u]["candidates"]
            expect = dict(zip(cands, offline_scores(artifact, session, [e["item_id"] for e in hist],
                                                    [e["event"] for e in hist], cands)))
            # The served scores are the offline scores of the history the state should hold ...
            np.testing.assert_allclose([i["score"] for i in out["items"]],
                                       [expect[i["item_id"]] for i in out["items"]], atol=1e-5, rtol=0)
            # ... and the list is the top of the offline ranking.
            np.testing.assert_allclose([i["score"] for i in out["items"]],
                                       sorted(expect.values(), reverse=True)[:len(out["items"])], atol=1e-5, rtol=0)

    # Job 2's own metrics on the TaskManager's Prometheus endpoint (counters restart with the job).
    served_by_job2 = 3 * N_USERS - sum(1 for u in users if got[f"edge-{u}"][0]["model_version"] != new_version)
    assert total(metrics, "rerank_requests") == served_by_job2
    assert total(metrics, "rerank_ranked_lists") == served_by_job2
    assert total(metrics, "rerank_events") == TAIL * N_USERS
    assert total(metrics, "rerank_scoring_us") > 0 and total(metrics, "rerank_scoring_failures") == 0
    assert total(metrics, "rerank_dead_letters") == 0
    loaded = [labels for name, series in metrics.items() if name.endswith("rerank_model_version_model_loaded")
              for labels, value in series if value == 1]
    # The reporter writes label values with [^a-zA-Z0-9:_] replaced by '_'.
    assert loaded and all('model_version="sasrec_v1_resumed"' in labels for labels in loaded), \
        sorted(n for n in metrics if "rerank" in n)
    cluster.cancel(job2)
