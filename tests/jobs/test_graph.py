"""The job graph, checked without running it (JVM, no broker)."""
import json
import shutil
from pathlib import Path

import pytest

from jobs.config import JobConfig
from jobs.rerank_job import build_pipeline, create_env
from models.errors import ArtifactError


def _plan(cfg: JobConfig) -> list[dict]:
    env = create_env(cfg)
    build_pipeline(env, cfg)
    return json.loads(env.get_execution_plan())["nodes"]


def test_keyed_graph_scores_in_the_one_keyed_python_operator(model_dir):
    nodes = _plan(JobConfig(model_dir=model_dir, parallelism=2))
    names = " | ".join(n["contents"] for n in nodes)
    for step in ("rerank_input", "model_updates", "rerank", "rerank_output", "rerank_dead_letters"):
        assert step in names, step
    # No Python operator before the shuffle (the key is extracted in SQL), none after scoring.
    for absent in ("parse", "user-state", "PythonCalc", "ranked-list", "_stream_key_by_map_operator"):
        assert absent not in names, absent
    keyed = [n for n in nodes if n["contents"] == "rerank"]
    # Records arrive hashed by user; the model-updates control stream is broadcast to every instance.
    assert keyed and [p.get("ship_strategy") for p in keyed[0]["predecessors"]] == ["HASH", "BROADCAST"]


def test_pandas_graph_wires_parse_state_scoring_and_sinks(model_dir):
    nodes = _plan(JobConfig(model_dir=model_dir, parallelism=2, scoring="pandas"))
    names = " | ".join(n["contents"] for n in nodes)
    for step in ("rerank_input", "parse", "user-state", "PythonCalc", "ranked-list", "rerank_output",
                 "rerank_dead_letters"):
        assert step in names, step
    keyed = [n for n in nodes if "user-state" in n["contents"]]
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


def test_kafka_properties_reach_every_source_and_sink_table(model_dir):
    """--kafka-property values land, quoted intact, as properties.* on all three Kafka tables.

    TLS/SASL cannot be shown end to end on this platform's broker (README "Guarantees"); this
    checks what the Kafka connector hands to its clients: every 'properties.*' table option.
    """
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            'username="svc" password="p\'w;d";')
    cfg = JobConfig(model_dir=model_dir, kafka_property=f"security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                                                         f"sasl.jaas.config={jaas}")
    env = create_env(cfg)
    t_env = build_pipeline(env, cfg)
    for table in ("rerank_input", "rerank_output", "rerank_dead_letters"):
        ddl = t_env.execute_sql(f"SHOW CREATE TABLE {table}").collect()
        with ddl:
            text = "".join(str(row[0]) for row in ddl)
        assert "'properties.security.protocol' = 'SASL_SSL'" in text, (table, text)
        assert "'properties.sasl.mechanism' = 'PLAIN'" in text, table
        assert "'properties.sasl.jaas.config' = '" + jaas.replace("'", "''") + "'" in text, (table, text)
        assert "'properties.bootstrap.servers'" in text, table
