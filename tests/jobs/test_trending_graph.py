"""The trending job's graph and config, checked without running it (JVM, no broker)."""
import json
import subprocess
import sys

import pytest

from jobs.config import REPO_ROOT, TrendConfig
from jobs.runner import create_env
from jobs.trending_job import build_pipeline
from udfs.errors import ConfigError
from udfs.trending import DEFAULT_HALF_LIFE_MS


def plan_nodes(cfg: TrendConfig) -> list[dict]:
    env = create_env(cfg)
    build_pipeline(env, cfg)
    return json.loads(env.get_execution_plan())["nodes"]


def node(nodes: list[dict], name: str) -> dict:
    found = [n for n in nodes if n["contents"] == name]
    assert len(found) == 1, (name, [n["contents"] for n in nodes])
    return found[0]


def test_items_only_graph_keys_events_by_item_in_sql():
    nodes = plan_nodes(TrendConfig())
    names = " | ".join(n["contents"] for n in nodes)
    for step in ("trend_events", "JSON_VALUE", "$.item_id", "item-trends", "trends_output", "trend_dead_letters"):
        assert step in names, step
    assert "trend_catalog" not in names and "category-trends" not in names
    items = node(nodes, "item-trends")
    # keyed in the JVM: the only input is a hash exchange from the SQL projection, no Python key selector
    assert [p["ship_strategy"] for p in items["predecessors"]] == ["HASH"]
    assert "_stream_key_by_map_operator" not in names


@pytest.mark.parametrize("parallelism", [1, 2])
def test_catalog_graph_connects_catalog_and_counts_categories(parallelism):
    nodes = plan_nodes(TrendConfig(catalog_topic="item-catalog", parallelism=parallelism))
    names = " | ".join(n["contents"] for n in nodes)
    assert "trend_catalog" in names
    items = node(nodes, "item-trends")
    assert [p["ship_strategy"] for p in items["predecessors"]] == ["HASH", "HASH"]  # events + catalog
    assert all(n["parallelism"] == parallelism for n in nodes if n["contents"] in ("item-trends", "category-trends"))
    categories = node(nodes, "category-trends")
    by_id = {n["id"]: n for n in nodes}
    (feed,) = categories["predecessors"]
    assert feed["ship_strategy"] == "HASH"
    # the category counts are the item operator's side output, keyed by category
    assert any(p["id"] == items["id"] for p in by_id[feed["id"]]["predecessors"])
    # both operators write the same topic
    writer = [n for n in nodes if n["contents"].startswith("trends_output") and "Writer" in n["contents"]][0]
    assert len(writer["predecessors"]) == 2


def test_config_defaults_flags_env_and_weights():
    cfg = TrendConfig()
    assert (cfg.trends_topic, cfg.catalog_topic, cfg.half_life_ms, cfg.emit_interval_ms) == \
        ("item-trends", "", DEFAULT_HALF_LIFE_MS, 60_000)
    assert (cfg.group_id, cfg.job_name) == ("trending-job", "trending")
    assert set(cfg.weights.values()) == {1.0} and set(cfg.weights) == set(cfg.event_type_names)
    cfg = TrendConfig.from_args(["--catalog-topic", "cat", "--emit-interval-ms", "500",
                                 "--event-weights", "cart=2, purchase=3,view=0"],
                                environ={"RERANK_TRENDS_TOPIC": "trends", "RERANK_HALF_LIFE_MS": "3600000"})
    assert (cfg.catalog_topic, cfg.trends_topic, cfg.emit_interval_ms, cfg.half_life_ms) == \
        ("cat", "trends", 500, 3_600_000)
    assert cfg.weights == {"view": 0.0, "click": 1.0, "cart": 2.0, "purchase": 3.0, "rate": 1.0}


@pytest.mark.parametrize("changes,match", [
    ({"trends_topic": ""}, "distinct"),
    ({"trends_topic": "user-events"}, "distinct"),
    ({"catalog_topic": "item-trends"}, "distinct"),
    ({"catalog_topic": "dead-letters"}, "distinct"),
    ({"half_life_ms": 0}, "half_life_ms"),
    ({"emit_interval_ms": 0}, "emit_interval_ms"),
    ({"state_ttl_ms": 19 * DEFAULT_HALF_LIFE_MS}, "20 half-lives"),
    ({"event_weights": "vieww=2"}, "event weight"),
    ({"event_weights": "view=-1"}, ">= 0"),
    ({"event_weights": "view=nan"}, ">= 0"),
    ({"event_weights": "view=x"}, "not a number"),
    ({"event_weights": "view=1,view=2"}, "once per name"),
    ({"event_weights": "view=0,click=0,cart=0,purchase=0,rate=0"}, "every event type out"),
])
def test_config_refuses(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrendConfig(**changes)


def test_entry_point_runs_as_a_script():
    out = subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "trending_job.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--emit-interval-ms" in out.stdout and "--catalog-topic" in out.stdout and "--event-weights" in out.stdout
