"""The feedback job on the minicluster against the broker: impressions joined with later actions.

Black-box on the topic contract: ranked lists and user events are produced directly (as the
ranking job and the users' apps would), and the labelled samples are read back; the online
metrics are scraped from the job's Prometheus endpoint.
"""
from __future__ import annotations

import math
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from jobs.cluster import minicluster_reporter_jars
from jobs.config import REPO_ROOT, FeedbackConfig
from jobs.feedback_job import running
from jobs.kafka_io import TopicReader, produce
from jobs.local_broker import free_port
from jobs.online_eval import feedback_metrics

pytestmark = pytest.mark.integration
T = 1_700_000_000_000
WINDOW_MS = 10_000


def shown(rid: str, user: str, items: list[str], at: int, version: str = "sasrec/v3", arm: str = "main") -> tuple:
    return user, {"request_id": rid, "user_id": user, "model_version": version, "arm": arm, "history_len": 3,
                  "fallback": False, "ts": at - 5, "emitted_at": at,
                  "items": [{"item_id": i, "score": 1.0 - n / 10} for n, i in enumerate(items)]}


def action(user: str, item: str, event: str, at: int) -> tuple:
    return user, {"user_id": user, "item_id": item, "event": event, "ts": at}


METRICS_K = 2
METRIC_PREFIX = "flink_taskmanager_job_task_operator_feedback_arm_model_version_"


def prometheus_label(value: str) -> str:
    """A label value as Flink's Prometheus reporter writes it: characters outside [a-zA-Z0-9:_] -> '_'."""
    return re.sub(r"[^a-zA-Z0-9:_]", "_", value)


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format -> [(name, labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if m:
            out.append((m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")),
                        float(m.group(3))))
    return out


def online_metrics(url: str) -> dict[str, dict[str, float]]:
    """The job's feedback metrics per "<arm> (<model_version>)", summed over subtasks (ratios: the
    only subtask's, the job runs at parallelism 1)."""
    out: dict[str, dict[str, float]] = {}
    for name, labels, value in scrape(url):
        if name.startswith(METRIC_PREFIX):
            group = out.setdefault(f"{labels['arm']} ({labels['model_version']})", {})
            metric = name[len(METRIC_PREFIX):]
            group[metric] = group.get(metric, 0.0) + value
    return out


def reporting_cfg(cfg: FeedbackConfig, tmp_path: Path) -> tuple[FeedbackConfig, str]:
    """`cfg` with the loopback Prometheus reporter on the minicluster, on a free port; its URL."""
    port = free_port()
    conf = tmp_path / "config.yaml"
    conf.write_text(f"{(REPO_ROOT / 'flink-conf' / 'config.yaml').read_text()}\nmetrics.reporter.prom.port: {port}\n")
    jars = ";".join([*cfg.jar_paths, *minicluster_reporter_jars()])
    return cfg.replace(flink_conf=str(conf), jars=jars), f"http://127.0.0.1:{port}/metrics"


def test_impressions_are_joined_with_actions_in_the_window(broker, tmp_path):
    run = uuid.uuid4().hex[:8]
    topics = {"ranked": f"fb-ranked-{run}", "events": f"fb-events-{run}", "samples": f"fb-samples-{run}"}
    broker.create_topics(list(topics.values()), partitions=1)
    cfg, metrics_url = reporting_cfg(FeedbackConfig(
        bootstrap_servers=broker.bootstrap_servers, output_topic=topics["ranked"], events_topic=topics["events"],
        samples_topic=topics["samples"], group_id=f"fb-{run}", feedback_window_ms=WINDOW_MS,
        feedback_lateness_ms=0, feedback_idle_timeout_ms=1000, checkpoint_interval_ms=1000,
        online_metrics_k=METRICS_K, job_name="it-feedback"), tmp_path)
    samples = TopicReader(broker.bootstrap_servers, topics["samples"])
    lists = {"r1", "r2", "r3", "r4", "r5"}
    with running(cfg):
        produce(broker.bootstrap_servers, topics["ranked"], [
            shown("r1", "alice", ["i1", "i2", "i3"], T, arm="treatment", version="sasrec/b"),
            shown("r2", "bob", ["i1"], T + 1000),
            shown("r2", "bob", ["i1"], T + 1000),         # a copy (at-least-once output): one list
            shown("r3", "carol", ["i1", "i2", "i3", "i4"], T + 2000),
            shown("r4", "dave", ["i5", "i6"], T + 3000, arm="treatment", version="sasrec/b"),
            shown("r5", "erin", [], T + 3000)])            # nothing shown: no samples, not a list
        produce(broker.bootstrap_servers, topics["events"], [
            # In time order (no lateness allowed): the late click last.
            action("alice", "i1", "view", T - 1000),      # before the list was shown: not a response to it
            action("bob", "i9", "click", T + 1500),       # an item bob was not shown
            action("alice", "i1", "click", T + 2000),
            action("carol", "i2", "click", T + 2500),     # position 2: a hit at k = 2 ...
            action("carol", "i2", "cart", T + 2600),      # ... once, however many actions
            action("carol", "i3", "purchase", T + 2700),  # position 3: below k, but a conversion
            action("dave", "i6", "view", T + 4000),
            action("alice", "i2", "purchase", T + 5000),
            action("alice", "i3", "click", T + WINDOW_MS + 10_000)])  # too late
        # Time moves on for both inputs, so the shown items nobody acted on are written too, and
        # the metrics' window (a minute, from T - 20 s) closes: the join's output watermark is T + 50 s.
        produce(broker.bootstrap_servers, topics["ranked"], [shown("later", "zoe", ["i1"], T + 60_000)])
        produce(broker.bootstrap_servers, topics["events"], [action("zoe", "i7", "view", T + 60_000)])
        samples.read_until(lambda rs: {(r["value"]["request_id"], r["value"]["item_id"]) for r in rs}
                           >= {("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1"), ("r3", "i1"),
                               ("r3", "i4"), ("r4", "i5")}, 120, settle_s=2)
        ours = [r["value"] for r in samples.records if r["value"]["request_id"] in lists]
        # Keyed as the Prometheus labels spell them (model_version="sasrec_b").
        expected = feedback_metrics([{**s, "model_version": prometheus_label(s["model_version"])} for s in ours],
                                    k=METRICS_K)
        deadline = time.monotonic() + 60
        while True:
            live = online_metrics(metrics_url)
            counted = {g: live.get(g, {}).get("lists") for g in expected}
            if counted == {g: m["lists"] for g, m in expected.items()} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    samples.close()
    assert set(expected) == {"treatment (sasrec_b)", "main (sasrec_v3)"}, expected
    assert set(live) == set(expected), live  # zoe's list: its window has not closed
    for group, want in expected.items():
        got = live[group]
        assert got["lists"] == want["lists"], (group, got)
        assert got["clicked_lists"] == round(want[f"ctr@{METRICS_K}"] * want["lists"]), (group, got)
        assert got["converted_lists"] == round(want["conversion_rate"] * want["lists"]), (group, got)
        # feedback_metrics rounds to 4 places; the exact values are below.
        assert got["ctr"] == pytest.approx(want[f"ctr@{METRICS_K}"], abs=5e-5), (group, got)
        assert got["ndcg"] == pytest.approx(want[f"ndcg@{METRICS_K}"], abs=5e-5), (group, got)
        assert got["conversion_rate"] == pytest.approx(want["conversion_rate"], abs=5e-5), (group, got)
        assert got["ndcg_micros"] / 1e6 / got["lists"] == pytest.approx(got["ndcg"], abs=1e-6)
    # r1: hits at 1 and 2 (ideal); r4: one at 2; r3: one at 2 (its purchase at 3 is below k); r2: none.
    partial = 1 / math.log2(3)
    assert live["treatment (sasrec_b)"]["ndcg"] == pytest.approx((1.0 + partial) / 2, abs=1e-9)
    assert live["main (sasrec_v3)"]["ndcg"] == pytest.approx(partial / 2, abs=1e-9)
    assert (live["main (sasrec_v3)"]["ctr"], live["main (sasrec_v3)"]["conversion_rate"]) == (0.5, 0.5)

    got = {(r["value"]["request_id"], r["value"]["item_id"]): r for r in samples.records
           if r["value"]["request_id"] in ("r1", "r2")}
    assert set(got) == {("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1")}, sorted(got)
    assert not [r for r in samples.records if r["value"]["request_id"] == "r5"]
    click, buy, ignored, bob = (got[k]["value"] for k in (("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1")))
    assert (click["position"], click["event"], click["clicked"], click["converted"], click["latency_ms"]) == \
        (1, "click", True, False, 2000)
    assert (buy["position"], buy["event"], buy["clicked"], buy["converted"], buy["latency_ms"]) == \
        (2, "purchase", True, True, 5000)
    assert (ignored["position"], ignored["event"], ignored["clicked"], ignored["latency_ms"]) == (3, None, False, None)
    assert (bob["clicked"], bob["event"]) == (False, None)
    assert (click["model_version"], click["arm"], click["score"], click["shown_at"], click["window_ms"]) == \
        ("sasrec/b", "treatment", 1.0, T, WINDOW_MS)
    assert got[("r1", "i1")]["key"] == "alice"
    metrics = feedback_metrics([r["value"] for r in samples.records if r["value"]["request_id"] in ("r1", "r2")])
    assert metrics["treatment (sasrec/b)"]["ctr@10"] == 1.0 and metrics["main (sasrec/v3)"]["ctr@10"] == 0.0
