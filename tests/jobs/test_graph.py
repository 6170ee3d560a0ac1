"""The job graph, checked without running it (JVM, no broker)."""
import json
import shutil
from pathlib import Path

import pytest

from jobs.config import JobConfig
from jobs.rerank_job import build_pipeline, create_env
from models.errors import ArtifactError


def test_graph_wires_parse_state_scoring_and_sinks(model_dir):
    cfg = JobConfig(model_dir=model_dir, parallelism=2)
    env = create_env(cfg)
    build_pipeline(env, cfg)
    plan = json.loads(env.get_execution_plan())
    names = " | ".join(n["contents"] for n in plan["nodes"])
    for step in ("rerank_input", "parse", "user-state", "PythonCalc", "ranked-list", "rerank_output",
                 "rerank_dead_letters"):
        assert step in names, step
    keyed = [n for n in plan["nodes"] if "user-state" in n["contents"]]
    assert keyed and any(p.get("ship_strategy") == "HASH" for p in keyed[0].get("predecessors", []))


def test_incomplete_model_dir_is_refused_before_submission(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    cfg = JobConfig(model_dir=str(tmp_path))
    with pytest.raises(ArtifactError):
        build_pipeline(create_env(cfg), cfg)


def test_corrupt_onnx_file_is_refused_before_submission(tmp_path, model_dir):
    for f in Path(model_dir).iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "model.onnx").write_bytes((tmp_path / "model.onnx").read_bytes()[:1000])
    cfg = JobConfig(model_dir=str(tmp_path))
    with pytest.raises(ArtifactError, match="cannot load"):
        build_pipeline(create_env(cfg), cfg)
