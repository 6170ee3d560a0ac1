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
cfg = JobConfig(model_dir=sys.argv[1], parallelism=2, scoring=sys.argv[2])
env = create_env(cfg)
build_pipeline(env, cfg)
graph = env._j_stream_execution_environment.getStreamGraph(False)
print("UIDS " + json.dumps([[n.getOperatorName(), n.getTransformationUID()] for n in graph.getStreamNodes().toArray()]))
"""


def fresh_client_uids(model_dir: str, scoring: str = "keyed") -> list[tuple[str, str | None]]:
    out = subprocess.run([sys.executable, "-c", PROBE, model_dir, scoring], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return [tuple(x) for x in json.loads(next(l for l in out.splitlines() if l.startswith("UIDS "))[5:])]


def _common(pairs: list[tuple[str, str | None]]) -> None:
    uids = dict(pairs)
    # The Kafka source's split offsets and the sinks' writer/committer state: planner-generated.
    assert uids["Source: KafkaSource-default_catalog.default_database.rerank_input"] == "1_kafka"
    sinks = [(name, uid) for name, uid in pairs if name.endswith(("Writer", "Committer"))]
    assert len(sinks) == 4 and all(uid and "_sink" in uid for _, uid in sinks), sinks
    assert len({uid for _, uid in pairs if uid}) == len([uid for _, uid in pairs if uid]), "uids are unique"
    # Only stateless helpers go without one: PyFlink's key extraction and side-output map, and the
    # planner's table -> stream conversion of the keyed path.
    unnamed = {name for name, uid in pairs if not uid}
    assert {n for n in unnamed if not n.startswith("SinkConversion")} <= {"Map", "_stream_key_by_map_operator"}


def test_stateful_operators_have_stable_uids(model_dir):
    pairs = fresh_client_uids(model_dir)
    _common(pairs)
    # Keyed user state, the requests waiting for the watermark and their timers: one operator.
    assert dict(pairs)["rerank"] == "rerank"
    # What a resumed job is matched against: the same uids from another fresh client.
    assert fresh_client_uids(model_dir) == pairs


def test_pandas_path_operators_have_stable_uids(model_dir):
    pairs = fresh_client_uids(model_dir, "pandas")
    _common(pairs)
    uids = dict(pairs)
    assert (uids["user-state"], uids["parse"], uids["ranked-list"]) == ("user-state", "parse", "ranked-list")
    assert any(name.startswith("PythonCalc") and uid for name, uid in pairs)
