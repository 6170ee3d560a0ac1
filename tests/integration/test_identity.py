"""User identities: pseudonymized at ingress (keyed HMAC in the JVM), forgotten on request.

Real minicluster and broker; the raw ids are looked for, byte for byte, in everything the job
wrote: ranked lists, dead letters and the checkpoint files of its state.
"""
from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path

import pytest
import yaml

from jobs.config import JobConfig
from jobs.kafka_io import TopicReader, produce, wait_committed
from jobs.rerank_job import running
from models.artifact import load_artifact
from udfs.identity import pseudonym, read_key

pytestmark = pytest.mark.integration
TIMEOUT_S = 90


def test_pseudonymized_ids_never_leave_raw_and_forget_clears_state(broker, topics, model_dir, tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(secrets.token_hex(32) + "\n")
    key = read_key(f"file:{key_file}")
    checkpoints = tmp_path / "checkpoints"
    conf = yaml.safe_load(Path(JobConfig().flink_conf).read_text())
    conf["execution.checkpointing.dir"] = checkpoints.as_uri()
    (tmp_path / "flink.yaml").write_text(yaml.safe_dump(conf))
    cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                    requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                    dead_letter_topic=topics["dead-letters"], group_id=f"it-id-{uuid.uuid4().hex[:6]}",
                    model_dir=model_dir, job_name="it-identity", checkpoint_interval_ms=500,
                    pseudonymize_key=f"file:{key_file}", flink_conf=str(tmp_path / "flink.yaml"),
                    event_types="view,click,cart,purchase,rate,wishlist")  # a deployment's own event name too
    catalog = sorted(load_artifact(model_dir).item_to_index)[:50]
    raw = [f"raw-person-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    events = [(u, {"user_id": u, "item_id": catalog[j], "event": "wishlist" if j == 3 else "view", "ts": 1_000 + j})
              for u in raw for j in range(4)]
    bad = [(raw[0], {"user_id": raw[0], "item_id": "x", "event": "teleport", "ts": 5}),  # a dead letter naming raw[0]
           (raw[1], {"user_id": raw[2], "item_id": "x", "event": "view", "ts": 5})]     # key mismatch: both ids

    def request(rid: str, user: str) -> tuple[str, dict]:
        return user, {"request_id": rid, "user_id": user, "candidates": catalog[:10], "k": 3,
                      "ts": int(time.time() * 1000)}

    outputs = TopicReader(broker.bootstrap_servers, topics["ranked-lists"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    with running(cfg):
        ends = produce(broker.bootstrap_servers, topics["user-events"], events + bad)
        wait_committed(broker.bootstrap_servers, cfg.group_id, topics["user-events"], ends, TIMEOUT_S)
        produce(broker.bootstrap_servers, topics["rank-requests"], [request(f"a-{i}", u) for i, u in enumerate(raw)])
        outputs.read_until(lambda rs: len(rs) >= 3, TIMEOUT_S, settle_s=0)
        # Forget raw[0], in order after its events, then ask again for everyone.
        ends = produce(broker.bootstrap_servers, topics["user-events"],
                       [(raw[0], {"user_id": raw[0], "event": "forget", "ts": int(time.time() * 1000)})])
        wait_committed(broker.bootstrap_servers, cfg.group_id, topics["user-events"], ends, TIMEOUT_S)
        produce(broker.bootstrap_servers, topics["rank-requests"], [request(f"b-{i}", u) for i, u in enumerate(raw)])
        outputs.read_until(lambda rs: len({r["value"]["request_id"] for r in rs}) >= 6, TIMEOUT_S)
        dead.read_until(lambda rs: len(rs) >= 2, TIMEOUT_S)
        time.sleep(1.5)  # a checkpoint after the forget
    outputs.close()
    dead.close()

    lists = {r["value"]["request_id"]: r for r in outputs.records}
    assert set(lists) == {f"{p}-{i}" for p in "ab" for i in range(3)}
    for i, u in enumerate(raw):
        for p in "ab":
            r = lists[f"{p}-{i}"]
            assert r["key"] == r["value"]["user_id"] == pseudonym(u, key)
    assert lists["a-0"]["value"]["history_len"] == 4 and lists["b-0"]["value"]["history_len"] == 0, "forgotten"
    assert lists["b-1"]["value"]["history_len"] == 4, "other users keep their state"
    letters = [r["value"] for r in dead.records]
    assert {d["reason"] for d in letters} == {"unknown_event", "key_mismatch"}
    assert all(d["payload"] is None and len(d["payload_sha256"]) == 64 for d in letters)

    written = repr([r["value"] for r in outputs.records + dead.records]).encode()
    state = b"".join(p.read_bytes() for p in checkpoints.rglob("*") if p.is_file())
    assert state, "checkpoints were written"
    for u in raw:
        assert u.encode() not in written, f"raw id {u} in the output"
        assert u.encode() not in state, f"raw id {u} in checkpointed state"
    assert pseudonym(raw[1], key).encode() in state, "the state is keyed by pseudonyms (the scan can find ids)"
