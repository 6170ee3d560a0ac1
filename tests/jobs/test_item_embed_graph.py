"""The item-embedding job's graph and config, checked without running it (JVM, no broker)."""
import json

import pytest

from jobs.config import ItemEmbedConfig
from jobs.item_embed_job import build_pipeline
from jobs.runner import create_env
from models.text_encoder import ensure_encoder
from udfs.errors import ConfigError


def test_graph_parses_embeds_in_a_pandas_udf_and_routes():
    cfg = ItemEmbedConfig(encoder_dir=str(ensure_encoder()))
    env = create_env(cfg)
    build_pipeline(env, cfg)
    names = " | ".join(n["contents"] for n in json.loads(env.get_execution_plan())["nodes"])
    for step in ("catalog_input", "parse-catalog", "skip-unchanged", "PythonCalc", "route-embeddings",
                 "embeddings_output", "embed_dead_letters"):
        assert step in names, step
    keyed = [n for n in json.loads(env.get_execution_plan())["nodes"] if "skip-unchanged" in n["contents"]]
    assert keyed and any(p.get("ship_strategy") == "HASH" for p in keyed[0].get("predecessors", []))


def test_without_skip_unchanged_there_is_no_keyed_step():
    cfg = ItemEmbedConfig(encoder_dir=str(ensure_encoder()), skip_unchanged=0)
    env = create_env(cfg)
    build_pipeline(env, cfg)
    names = " | ".join(n["contents"] for n in json.loads(env.get_execution_plan())["nodes"])
    assert "parse-catalog" in names and "skip-unchanged" not in names


def test_missing_encoder_is_refused_before_submission(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    cfg = ItemEmbedConfig(encoder_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="lacks"):
        build_pipeline(create_env(cfg), cfg)


def test_config_flags_env_and_validation():
    cfg = ItemEmbedConfig.from_args(["--catalog-topic", "cat", "--embed-batch-size", "8"],
                                    environ={"RERANK_EMBEDDINGS_TOPIC": "emb"})
    assert (cfg.catalog_topic, cfg.embeddings_topic, cfg.embed_batch_size) == ("cat", "emb", 8)
    assert (cfg.group_id, cfg.job_name) == ("item-embed-job", "item-embed")
    with pytest.raises(ConfigError, match="distinct"):
        ItemEmbedConfig(catalog_topic="t", embeddings_topic="t")
    with pytest.raises(ConfigError, match="embed_batch_size"):
        ItemEmbedConfig(embed_batch_size=0)
    with pytest.raises(ConfigError, match="skip_unchanged"):
        ItemEmbedConfig(skip_unchanged=2)


def test_entry_point_runs_as_a_script():
    import subprocess
    import sys

    from jobs.config import REPO_ROOT

    out = subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "item_embed_job.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--catalog-topic" in out.stdout and "--encoder-dir" in out.stdout
