"""The broker restarts mid-stream with durable storage: the job reconnects, nothing is lost.

Slow (about 2-3 minutes on 2 cores): `make test-slow` or `.venv/bin/python -m pytest -m slow tests/faults`.

The broker keeps its log and committed offsets in an S3-compatible object store (SeaweedFS on
loopback, jobs/local_broker.py `LocalObjectStore`); the job runs on the PyFlink minicluster with
checkpoints every second, under a steady load (tests/faults/load.py). The broker process is
stopped, stays down for a few seconds and starts again on the same port and storage; the load
generator's producer and the job's Kafka clients retry meanwhile. The assertions are black-box,
on `ranked-lists`.
"""
from __future__ import annotations

import logging
import time
import uuid

import pytest

from jobs.config import JobConfig
from jobs.kafka_io import TopicReader
from jobs.local_broker import LocalBroker, LocalObjectStore
from jobs.rerank_job import running
from tests.faults.load import SteadyLoad, check_answers

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)
TIMEOUT_S = 180
DOWN_S = 5.0


@pytest.fixture
def durable_broker(tmp_path):
    with LocalObjectStore(tmp_path / "object-store") as store:
        broker = LocalBroker(storage=store.storage_url, env=store.client_env(), log_path=tmp_path / "broker.log")
        with broker:
            yield broker


def test_broker_restart_with_durable_storage(durable_broker, model_dir):
    run = uuid.uuid4().hex[:8]
    topics = {k: f"{k}-{run}" for k in ("user-events", "rank-requests", "ranked-lists", "dead-letters")}
    durable_broker.create_topics(list(topics.values()), partitions=2)
    cfg = JobConfig(bootstrap_servers=durable_broker.bootstrap_servers, events_topic=topics["user-events"],
                    requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                    dead_letter_topic=topics["dead-letters"], group_id=f"faults-broker-{run}",
                    model_dir=model_dir, checkpoint_interval_ms=1000, request_hold_ms=3000,
                    job_name="faults-broker-restart")
    load = SteadyLoad(durable_broker.bootstrap_servers, topics["user-events"], topics["rank-requests"])
    outputs = None
    with running(cfg) as client:
        try:
            load.start()
            outputs = TopicReader(durable_broker.bootstrap_servers, topics["ranked-lists"])
            outputs.read_until(lambda rs: len(rs) >= 20, TIMEOUT_S, settle_s=3)
            before = len(outputs.records)
            outputs.close()  # its connection would only log errors while the broker is down

            t0 = time.monotonic()
            durable_broker.restart(down_s=DOWN_S)
            log.info("broker back after %.1f s", time.monotonic() - t0)
            time.sleep(20)  # steady load after the restart
        finally:
            load.stop()
        outputs = TopicReader(durable_broker.bootstrap_servers, topics["ranked-lists"])
        try:
            outputs.read_until(lambda rs: load.request_ids <= {r["value"]["request_id"] for r in rs},
                               TIMEOUT_S, settle_s=3)
        finally:
            outputs.close()
        status = str(client.get_job_status().result())
    assert "RUNNING" in status, f"the job is {status} after the broker restart"
    assert not load.failed, f"the load generator could not deliver {load.failed[:5]}"
    counts = check_answers(load.requests, (r["value"] for r in outputs.records))
    print("broker-restart:", counts, "answered before the restart", before)
    # Requests were sent while the broker was down and after it came back, and all were answered.
    assert counts["requests"] > 20 + 8 * 20
