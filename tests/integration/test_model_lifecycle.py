"""Live model swap, A/B split, bad models and restart, on the real minicluster against the broker.

Versions come from a real registry in tmp_path (published copies of committed artifacts); bad
versions are broken copies (tests/models/bad_models.py). Load runs during every control change.
"""
from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from jobs.config import REPO_ROOT, JobConfig
from jobs.kafka_io import Producer, TopicReader, produce, wait_committed
from jobs.rerank_job import running
from models.artifact import load_artifact
from models.registry import ANNOUNCE_KEY, Registry
from tests.models.bad_models import BAD_KINDS, make_bad
from udfs.faults import Faults
from udfs.control import ModelRef, Serving, apply_announcement

pytestmark = pytest.mark.integration

TIMEOUT_S = 90
N_USERS = 30
OTHER_MODEL = str(REPO_ROOT / "models" / "sasrec" / "v2")


class Load:
    """Requests at a steady rate from a background thread until stopped; remembers what it sent."""

    def __init__(self, bootstrap: str, topic: str, users: list[str], catalog: list[str], rate: float = 15.0) -> None:
        self.producer = Producer(bootstrap)
        self.topic, self.users, self.catalog, self.period = topic, users, catalog, 1 / rate
        self.sent: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            user = self.users[n % len(self.users)]
            req = {"request_id": f"q{n}", "user_id": user, "ts": int(time.time() * 1000), "k": 5,
                   "candidates": [self.catalog[(n * 7 + j * 13) % len(self.catalog)] for j in range(12)]}
            self.producer.send(self.topic, user, req)
            self.sent[req["request_id"]] = req
            n += 1
            self._stop.wait(self.period)
        self.producer.flush()

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.producer.close()


def lists_by_request(reader: TopicReader) -> dict[str, list[dict]]:
    out = collections.defaultdict(list)
    for r in reader.records:
        out[r["value"]["request_id"]].append(r["value"])
    return out


def setup_job(broker, topics, model_dir, tmp_path, name: str, **overrides) -> tuple[JobConfig, dict, list[str], list[str]]:
    topics = {**topics, "model-updates": f"model-updates-{uuid.uuid4().hex[:8]}"}
    broker.create_topics([topics["model-updates"]], partitions=1)
    catalog = sorted(load_artifact(model_dir).item_to_index)[:500]
    users = [f"{name}-u{i}" for i in range(N_USERS)]
    events = [(u, {"user_id": u, "item_id": catalog[(i * 31 + j) % len(catalog)], "event": "view", "ts": 1_000 + j})
              for i, u in enumerate(users) for j in range(3 + i % 4)]
    ends = produce(broker.bootstrap_servers, topics["user-events"], events)
    cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                    requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                    dead_letter_topic=topics["dead-letters"], model_updates_topic=topics["model-updates"],
                    group_id=f"it-{name}-{topics['ranked-lists']}", model_dir=model_dir, job_name=f"it-{name}",
                    checkpoint_interval_ms=1000, **overrides)
    return cfg, {"topics": topics, "ends": ends, "events": events}, users, catalog


def announce(bootstrap: str, topic: str, record: dict) -> None:
    produce(bootstrap, topic, [(ANNOUNCE_KEY.decode(), record)])


def test_swap_split_and_bad_models_under_load(broker, topics, model_dir, tmp_path):
    registry = Registry(tmp_path / "registry")
    a = registry.publish(model_dir, name="sasrec", version="a")
    b = registry.publish(OTHER_MODEL, name="sasrec", version="b")
    base = load_artifact(model_dir)
    base_version = f"{base.name}/{base.version}"
    cfg, setup, users, catalog = setup_job(broker, topics, model_dir, tmp_path, "swap", parallelism=2)
    t = setup["topics"]
    bad = {kind: make_bad(model_dir, tmp_path / kind, kind) for kind in BAD_KINDS}
    bad_records = [{"name": "sasrec", "version": kind.replace("_", "-"), "uri": str(path)} for kind, path in bad.items()]
    bad_records.append({"name": "sasrec", "version": "gone", "uri": str(tmp_path / "no-such-dir")})
    bad_records.append({"name": "sasrec", "version": "a", "uri": a.uri, "sha256": "f" * 64})  # checksum mismatch
    shares_wrong = {"arms": {"x": {"model": "sasrec/a", "share": 0.7}, "y": {"model": "sasrec/b", "share": 0.7}}}
    split = {"arms": {"control": {"model": "sasrec/a", "share": 0.5}, "treatment": {"model": "sasrec/b", "share": 0.5}},
             "salt": "exp-1"}

    outputs = TopicReader(broker.bootstrap_servers, t["ranked-lists"])
    dead = TopicReader(broker.bootstrap_servers, t["dead-letters"])
    with running(cfg):
        wait_committed(broker.bootstrap_servers, cfg.group_id, t["user-events"], setup["ends"], TIMEOUT_S)
        with Load(broker.bootstrap_servers, t["rank-requests"], users, catalog) as load:
            outputs.read_until(lambda rs: len(rs) >= 20, TIMEOUT_S, settle_s=0)
            announce(broker.bootstrap_servers, t["model-updates"], b.announcement())
            outputs.read_until(lambda rs: any(r["value"]["model_version"] == "sasrec/b" for r in rs), TIMEOUT_S,
                               settle_s=2)
            for record in bad_records + [shares_wrong]:
                announce(broker.bootstrap_servers, t["model-updates"], record)
            dead.read_until(lambda rs: {json.loads(r["value"]["payload"]).get("version", "arms")
                                        for r in rs} >= {r.get("version", "arms") for r in bad_records + [shares_wrong]},
                            TIMEOUT_S, settle_s=2)
            after_bad = len(outputs.records)
            announce(broker.bootstrap_servers, t["model-updates"], {**a.announcement(), **split})
            outputs.read_until(lambda rs: any(r["value"]["arm"] == "treatment" for r in rs), TIMEOUT_S, settle_s=3)
        outputs.read_until(lambda rs: set(load.sent) <= set(lists_by_request(outputs)), TIMEOUT_S)
    outputs.close()
    dead.close()

    answered = lists_by_request(outputs)
    assert set(answered) == set(load.sent), f"missing: {sorted(set(load.sent) - set(answered))[:10]}"
    lists = [copies[0] for copies in answered.values()]
    assert all(v["model_version"] and v["arm"] for v in lists), "every list is tagged"
    assert not [v for v in lists if v["fallback"]], "no failed requests: every user has history, no model failed"
    versions = collections.Counter(v["model_version"] for v in lists)
    assert set(versions) <= {base_version, "sasrec/a", "sasrec/b"} and versions["sasrec/b"] > 0, versions
    # While the bad announcements were refused, sasrec/b kept serving everything.
    refused_window = [r["value"] for r in outputs.records[after_bad - 10:after_bad]]
    assert {v["model_version"] for v in refused_window} == {"sasrec/b"}
    reasons = [r["value"] for r in dead.records]
    for record in bad_records:
        mine = [d for d in reasons if json.loads(d["payload"]).get("version") == record["version"]]
        assert mine and all(d["reason"] == "model_refused" and d["topic"] == t["model-updates"] for d in mine), record
    assert any(d["reason"] == "bad_share" for d in reasons)
    by_kind = {json.loads(d["payload"]).get("version"): d["error"] for d in reasons}
    assert "cannot load" in by_kind["truncated-onnx"] and "ONNX inputs" in by_kind["wrong-inputs"]
    assert "not finite" in by_kind["nan-weights"] and "canary" in by_kind["vocab-mismatch"]
    assert "not a directory" in by_kind["gone"] and "the announcement says" in by_kind["a"]
    # After the split: each user stays in one arm, the arm the salted hash gives, scored by its model.
    serving = apply_announcement(Serving.single(ModelRef("sasrec/b", b.uri)), json.dumps({**a.announcement(), **split}))
    split_lists = [v for v in lists if v["arm"] in ("control", "treatment")]
    assert split_lists
    for v in split_lists:
        arm = serving.assign(v["user_id"])
        assert (v["arm"], v["model_version"]) == (arm.name, arm.model)
    assert {v["arm"] for v in split_lists} == {"control", "treatment"}


def test_failure_restores_versions_and_history_and_model_faults_fall_back(broker, topics, model_dir, tmp_path):
    """The scoring operator fails mid-stream (test-only switch) and restarts from its last checkpoint:
    the A/B split comes back from state, every request is answered, histories continue exactly.
    Requests the model fails on (exception, NaN scores, a stall past the limit) get flagged
    fallback lists; the job stays up."""
    registry = Registry(tmp_path / "registry")
    b = registry.publish(OTHER_MODEL, name="sasrec", version="b")
    base = load_artifact(model_dir)
    cfg, setup, users, catalog = setup_job(broker, topics, model_dir, tmp_path, "restore", scoring_timeout_ms=500)
    t = setup["topics"]
    split = {**b.announcement(), "salt": "r1", "arms": {"base": {"model": f"{base.name}/{base.version}", "share": 0.5},
                                                         "new": {"model": "sasrec/b", "share": 0.5}}}
    per_user_events = collections.Counter(u for u, _ in setup["events"])

    def requests(prefix: str) -> list[tuple[str, dict]]:
        return [(u, {"request_id": f"{prefix}-{u}", "user_id": u, "ts": int(time.time() * 1000),
                     "candidates": catalog[i:i + 10], "k": 3}) for i, u in enumerate(users)]

    phase1, phase2 = requests("p1"), requests("p2")
    misbehave = {f"p2-{users[1]}": "raise", f"p2-{users[2]}": "nan", f"p2-{users[3]}": "stall"}
    marker = tmp_path / "operator-failed"
    # The operator fails at the first phase-2 request, after a checkpoint holds the split and phase 1.
    faults = Faults(fail_on_request=phase2[0][1]["request_id"], marker=str(marker), model=misbehave, stall_s=3.0)
    outputs = TopicReader(broker.bootstrap_servers, t["ranked-lists"])
    with running(cfg, faults=faults):
        wait_committed(broker.bootstrap_servers, cfg.group_id, t["user-events"], setup["ends"], TIMEOUT_S)
        control_end = produce(broker.bootstrap_servers, t["model-updates"], [(ANNOUNCE_KEY.decode(), split)])
        for n in range(60):  # probe until the split serves (it loads in the background)
            produce(broker.bootstrap_servers, t["rank-requests"],
                    [(users[0], {**phase1[0][1], "request_id": f"probe-{n}"})])
            if any(r["value"]["arm"] != "main" for r in outputs.read_until(
                    lambda rs: any(r["value"]["request_id"] == f"probe-{n}" for r in rs), 10, settle_s=0)):
                break
        probes = {r["value"]["request_id"] for r in outputs.records}
        ends = produce(broker.bootstrap_servers, t["rank-requests"], phase1)
        outputs.read_until(lambda rs: {r for r, _ in ((v["value"]["request_id"], 0) for v in rs)}
                           >= {q["request_id"] for _, q in phase1}, TIMEOUT_S)
        # A checkpoint holds the split and every phase-1 record before the failure is triggered.
        wait_committed(broker.bootstrap_servers, cfg.group_id, t["model-updates"], control_end, TIMEOUT_S)
        wait_committed(broker.bootstrap_servers, cfg.group_id, t["rank-requests"], ends, TIMEOUT_S)
        produce(broker.bootstrap_servers, t["rank-requests"], phase2)
        outputs.read_until(lambda rs: {v["value"]["request_id"] for v in rs} >= {q["request_id"] for _, q in phase2},
                           TIMEOUT_S * 2, settle_s=2)
    outputs.close()
    assert marker.exists(), "the operator failure was injected"
    answered = {rid: copies for rid, copies in lists_by_request(outputs).items() if rid not in probes}
    sent = {q["request_id"]: q for _, q in phase1 + phase2}
    assert set(answered) == set(sent), f"missing: {sorted(set(sent) - set(answered))}"
    serving = apply_announcement(Serving.single(ModelRef(f"{base.name}/{base.version}", model_dir)), json.dumps(split))
    for rid, copies in answered.items():
        first = {k: v for k, v in copies[0].items() if k != "emitted_at"}
        assert all({k: v for k, v in c.items() if k != "emitted_at"} == first for c in copies), \
            f"{rid}: duplicates after the restart differ beyond emitted_at"
        v = copies[0]
        arm = serving.assign(v["user_id"])
        assert (v["arm"], v["model_version"]) == (arm.name, arm.model), "the split survived the restart"
        assert v["history_len"] == per_user_events[v["user_id"]], "no event lost or applied twice"
        assert v["fallback"] is (rid in misbehave), rid
    assert {answered[rid][0]["arm"] for rid in sent} == {"base", "new"}
