"""The feedback job's graph, checked without running it (JVM, no broker): one join for both sinks."""
from __future__ import annotations

import json

from jobs.config import FeedbackConfig
from jobs.feedback_job import build_pipeline
from jobs.runner import create_env


def plan_nodes(cfg: FeedbackConfig) -> list[dict]:
    env = create_env(cfg)
    build_pipeline(env, cfg)
    return json.loads(env.get_execution_plan())["nodes"]


def kinds(nodes: list[dict]) -> list[str]:
    """'[9]:IntervalJoin(...)' -> 'IntervalJoin'; sources and sinks by their names."""
    return [n["contents"].split(":", 1)[1].split("(", 1)[0] if n["contents"].startswith("[") else n["contents"]
            for n in nodes]


def test_metrics_share_the_join_and_run_in_the_jvm():
    nodes = plan_nodes(FeedbackConfig(checkpoint_interval_ms=0))
    names = kinds(nodes)
    assert names.count("IntervalJoin") == 1, names  # planned once, read by both sinks
    assert sum(n.startswith("Source: KafkaSource") for n in names) == 2, names
    assert "GlobalWindowAggregate" in names and "online_metrics[" in " ".join(names)
    calls = [n["contents"] for n in nodes if "ONLINE_METRICS(" in n["contents"]]
    assert len(calls) == 1 and "ONLINE_METRICS(model_version, arm, " in calls[0], calls
    assert not [n for n in nodes if "Python" in n["contents"] or "python" in n["type"].lower()]


def test_metrics_off_leaves_the_samples_graph_alone():
    names = kinds(plan_nodes(FeedbackConfig(checkpoint_interval_ms=0, online_metrics_k=0)))
    assert names.count("IntervalJoin") == 1
    assert not [n for n in names if "Window" in n or "online_metrics" in n], names
