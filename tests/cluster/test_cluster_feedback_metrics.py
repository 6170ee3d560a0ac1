"""The feedback job's online metrics on a real standalone cluster: `flink run`, the TaskManager's
Prometheus endpoint (the loopback reporter as a plugin, the project's Java functions shipped with the
job on pipeline.jars).

Slow (about a minute and a half on 2 cores): `.venv/bin/python -m pytest -m slow tests/cluster -v`.
"""
from __future__ import annotations

import time
import uuid

import pytest

from jobs.kafka_io import TopicReader, produce
from jobs.online_eval import feedback_metrics
from tests.integration.test_feedback_job import T, WINDOW_MS, action, online_metrics, prometheus_label, shown

pytestmark = pytest.mark.slow
K = 2


def test_online_metrics_reach_the_taskmanagers_prometheus_endpoint(cluster, broker):
    run = uuid.uuid4().hex[:8]
    topics = {"ranked": f"cfb-ranked-{run}", "events": f"cfb-events-{run}", "samples": f"cfb-samples-{run}"}
    broker.create_topics(list(topics.values()), partitions=1)
    cluster.submit(["--bootstrap-servers", broker.bootstrap_servers, "--output-topic", topics["ranked"],
                    "--events-topic", topics["events"], "--samples-topic", topics["samples"],
                    "--group-id", f"cfb-{run}", "--feedback-window-ms", str(WINDOW_MS),
                    "--feedback-lateness-ms", "0", "--feedback-idle-timeout-ms", "1000",
                    "--checkpoint-interval-ms", "1000", "--online-metrics-k", str(K), "--jars", "",
                    "--job-name", "it-feedback"],
                   entry_point="jobs/feedback_job.py")
    produce(broker.bootstrap_servers, topics["ranked"], [
        shown("r1", "alice", ["i1", "i2", "i3"], T, arm="treatment", version="sasrec/b"),
        shown("r2", "bob", ["i1"], T + 1000)])
    produce(broker.bootstrap_servers, topics["events"], [
        action("alice", "i1", "click", T + 2000), action("alice", "i3", "purchase", T + 3000)])
    # Both inputs move on: the unanswered items are written and the metrics' window closes.
    produce(broker.bootstrap_servers, topics["ranked"], [shown("later", "zoe", ["i1"], T + 60_000)])
    produce(broker.bootstrap_servers, topics["events"], [action("zoe", "i7", "view", T + 60_000)])
    samples = TopicReader(broker.bootstrap_servers, topics["samples"])
    try:
        samples.read_until(lambda rs: {r["value"]["request_id"] for r in rs} >= {"r1", "r2"}, 120, settle_s=2)
    finally:
        samples.close()
    ours = [{**r["value"], "model_version": prometheus_label(r["value"]["model_version"])}
            for r in samples.records if r["value"]["request_id"] in ("r1", "r2")]
    expected = feedback_metrics(ours, k=K)
    deadline = time.monotonic() + 60
    while True:
        live = online_metrics(cluster.spec.metrics_url("taskmanager"))
        if {g: live.get(g, {}).get("lists") for g in expected} == {g: m["lists"] for g, m in expected.items()} \
                or time.monotonic() > deadline:
            break
        time.sleep(1)
    for group, want in expected.items():
        got = live.get(group, {})
        assert got.get("lists") == want["lists"], (group, live)
        assert got["ctr"] == pytest.approx(want[f"ctr@{K}"], abs=5e-5), (group, got)
        assert got["ndcg"] == pytest.approx(want[f"ndcg@{K}"], abs=5e-5), (group, got)
        assert got["conversion_rate"] == pytest.approx(want["conversion_rate"], abs=5e-5), (group, got)
    assert live["treatment (sasrec_b)"]["ndcg"] == pytest.approx(1.0) and live["main (sasrec_v3)"]["ctr"] == 0.0
