"""Savepoint compatibility: every operator that keeps state has a stable uid (JVM, no broker).

A savepoint maps state to operators by uid. DataStream operators get theirs from `.uid(...)`;
Table API operators (the Kafka source and sinks, the Python scoring operator) get
`<plan node id>_<kind>` from `table.exec.uid.generation: ALWAYS` in flink-conf/config.yaml. The
planner numbers nodes from 1 per client JVM (`flink run` starts one per job), so the graph is built
in a fresh interpreter here, as the cluster client does.
"""
import json
import subprocess
import sys

from jobs.config import REPO_ROOT

PROBE = """
import json, sys
from jobs.config import JobConfig
from jobs.rerank_job import build_pipeline, create_env
cfg = JobConfig(model_dir=sys.argv[1], parallelism=2)
env = create_env(cfg)
build_pipeline(env, cfg)
graph = env._j_stream_execution_environment.getStreamGraph(False)
print("UIDS " + json.dumps([[n.getOperatorName(), n.getTransformationUID()] for n in graph.getStreamNodes().toArray()]))
"""


def fresh_client_uids(model_dir: str) -> list[tuple[str, str | None]]:
    out = subprocess.run([sys.executable, "-c", PROBE, model_dir], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return [tuple(x) for x in json.loads(next(l for l in out.splitlines() if l.startswith("UIDS "))[5:])]


def test_stateful_operators_have_stable_uids(model_dir):
    pairs = fresh_client_uids(model_dir)
    uids = dict(pairs)
    # Keyed user state (and the requests it holds), explicit in the DataStream part.
    assert uids["user-state"] == "user-state"
    assert uids["parse"] == "parse"
    assert uids["ranked-list"] == "ranked-list"
    # The Kafka source's split offsets and the sinks' writer/committer state: planner-generated.
    assert uids["Source: KafkaSource-default_catalog.default_database.rerank_input"] == "1_kafka"
    sinks = [(name, uid) for name, uid in pairs if name.endswith(("Writer", "Committer"))]
    assert len(sinks) == 4 and all(uid and "_sink" in uid for _, uid in sinks), sinks
    assert any(name.startswith("PythonCalc") and uid for name, uid in pairs)
    assert len({uid for _, uid in pairs if uid}) == len([uid for _, uid in pairs if uid]), "uids are unique"
    # Only PyFlink's own stateless helpers (key extraction, side-output map) go without one.
    assert {name for name, uid in pairs if not uid} <= {"Map", "_stream_key_by_map_operator"}
    # What a resumed job is matched against: the same uids from another fresh client.
    assert fresh_client_uids(model_dir) == pairs
