"""The feedback job on the minicluster against the broker: impressions joined with later actions.

Black-box on the topic contract: ranked lists and user events are produced directly (as the
ranking job and the users' apps would), and the labelled samples are read back.
"""
from __future__ import annotations

import uuid

import pytest

from jobs.config import FeedbackConfig
from jobs.feedback_job import running
from jobs.kafka_io import TopicReader, produce
from jobs.online_eval import feedback_metrics

pytestmark = pytest.mark.integration
T = 1_700_000_000_000
WINDOW_MS = 10_000


def shown(rid: str, user: str, items: list[str], at: int, version: str = "sasrec/v3", arm: str = "main") -> tuple:
    return user, {"request_id": rid, "user_id": user, "model_version": version, "arm": arm, "history_len": 3,
                  "fallback": False, "ts": at - 5, "emitted_at": at,
                  "items": [{"item_id": i, "score": 1.0 - n / 10} for n, i in enumerate(items)]}


def action(user: str, item: str, event: str, at: int) -> tuple:
    return user, {"user_id": user, "item_id": item, "event": event, "ts": at}


def test_impressions_are_joined_with_actions_in_the_window(broker):
    run = uuid.uuid4().hex[:8]
    topics = {"ranked": f"fb-ranked-{run}", "events": f"fb-events-{run}", "samples": f"fb-samples-{run}"}
    broker.create_topics(list(topics.values()), partitions=1)
    cfg = FeedbackConfig(bootstrap_servers=broker.bootstrap_servers, output_topic=topics["ranked"],
                         events_topic=topics["events"], samples_topic=topics["samples"], group_id=f"fb-{run}",
                         feedback_window_ms=WINDOW_MS, feedback_lateness_ms=0, feedback_idle_timeout_ms=1000,
                         checkpoint_interval_ms=1000, job_name="it-feedback")
    samples = TopicReader(broker.bootstrap_servers, topics["samples"])
    with running(cfg):
        produce(broker.bootstrap_servers, topics["ranked"], [
            shown("r1", "alice", ["i1", "i2", "i3"], T, arm="treatment", version="sasrec/b"),
            shown("r2", "bob", ["i1"], T + 1000)])
        produce(broker.bootstrap_servers, topics["events"], [
            action("alice", "i1", "view", T - 1000),      # before the list was shown: not a response to it
            action("alice", "i1", "click", T + 2000),
            action("alice", "i2", "purchase", T + 5000),
            action("alice", "i3", "click", T + WINDOW_MS + 10_000),  # too late
            action("bob", "i9", "click", T + 1500)])      # an item bob was not shown
        # Time moves on for both inputs, so the shown items nobody acted on are written too.
        produce(broker.bootstrap_servers, topics["ranked"], [shown("later", "zoe", ["i1"], T + 60_000)])
        produce(broker.bootstrap_servers, topics["events"], [action("zoe", "i7", "view", T + 60_000)])
        samples.read_until(lambda rs: {(r["value"]["request_id"], r["value"]["item_id"]) for r in rs}
                           >= {("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1")}, 120, settle_s=2)
    samples.close()

    got = {(r["value"]["request_id"], r["value"]["item_id"]): r for r in samples.records
           if r["value"]["request_id"] in ("r1", "r2")}
    assert set(got) == {("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1")}, sorted(got)
    click, buy, ignored, bob = (got[k]["value"] for k in (("r1", "i1"), ("r1", "i2"), ("r1", "i3"), ("r2", "i1")))
    assert (click["position"], click["event"], click["clicked"], click["converted"], click["latency_ms"]) == \
        (1, "click", True, False, 2000)
    assert (buy["position"], buy["event"], buy["clicked"], buy["converted"], buy["latency_ms"]) == \
        (2, "purchase", True, True, 5000)
    assert (ignored["position"], ignored["event"], ignored["clicked"], ignored["latency_ms"]) == (3, None, False, None)
    assert (bob["clicked"], bob["event"]) == (False, None)
    assert (click["model_version"], click["arm"], click["score"], click["shown_at"], click["window_ms"]) == \
        ("sasrec/b", "treatment", 1.0, T, WINDOW_MS)
    assert got[("r1", "i1")]["key"] == "alice"
    metrics = feedback_metrics([r["value"] for r in samples.records if r["value"]["request_id"] in ("r1", "r2")])
    assert metrics["treatment (sasrec/b)"]["ctr@10"] == 1.0 and metrics["main (sasrec/v3)"]["ctr@10"] == 0.0
