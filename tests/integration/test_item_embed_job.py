"""The item-embedding job end to end: PyFlink minicluster, the real broker, the real encoder."""
from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from jobs.config import ItemEmbedConfig
from jobs.item_embed_job import create_item_topics, running
from jobs.kafka_io import Producer, TopicReader, produce
from models.text_encoder import ensure_encoder
from udfs.embeddings import CatalogItem, TextEmbedder, decode_embedding, item_text, text_sha256

pytestmark = pytest.mark.integration
TIMEOUT_S = 180  # the first batch starts a Python worker and loads a 90 MB model, on 2 shared cores

GOOD = [
    {"item_id": "m-1", "title": "Toy Story (1995)", "categories": ["Animation", "Children's", "Comedy"]},
    {"item_id": "m-2", "title": "Heat (1995)", "categories": ["Action", "Crime", "Thriller"], "ts": 1_700_000_000_000},
    {"item_id": "p-7", "title": "Trail shoe", "text": "Waterproof, grippy outsole.", "categories": ["Shoes"]},
    {"item_id": "p-8", "text": "Only a description, no title"},
    {"item_id": "p-9", "categories": ["Kitchen", "Knives"], "extra": {"ignored": True}},
    {"item_id": "ü-10", "title": "Amélie (2001)", "categories": ["Comedy", "Romance"]},
]
BAD = [  # (key, value, reason)
    (None, b"\xff\xfe not utf8", "not_utf8"),
    ("x", "{not json", "bad_json"),
    ("x", {"item_id": "x", "title": "  ", "categories": []}, "missing_field"),
    ("x", {"item_id": "x", "title": "ok", "categories": "Drama"}, "wrong_type"),
    ("someone-else", {"item_id": "x", "title": "ok"}, "key_mismatch"),
    ("x", {"title": "no id"}, "missing_field"),
    ("", None, "null_value"),  # a null value under an empty key deletes nothing
]


@pytest.fixture(scope="module")
def encoder_dir() -> str:
    return str(ensure_encoder())


def catalog_item(value: dict) -> CatalogItem:
    return CatalogItem(item_id=value["item_id"], title=value.get("title"), text=value.get("text"),
                       categories=tuple(value.get("categories", ())))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_item_embed_job(broker, encoder_dir, parallelism):
    run = uuid.uuid4().hex[:8]
    topics = {k: f"{k}-{run}" for k in ("item-catalog", "item-embeddings", "dead-letters")}
    cfg = ItemEmbedConfig(bootstrap_servers=broker.bootstrap_servers, catalog_topic=topics["item-catalog"],
                          embeddings_topic=topics["item-embeddings"], dead_letter_topic=topics["dead-letters"],
                          group_id=f"it-{run}", encoder_dir=encoder_dir, job_name=f"it-embed-{run}",
                          checkpoint_interval_ms=1000, parallelism=parallelism)
    create_item_topics(broker.bootstrap_servers, cfg, partitions=2)
    produce(broker.bootstrap_servers, topics["item-catalog"],
            [(v["item_id"], v) for v in GOOD] + [(k, v) for k, v, _ in BAD])
    offline = TextEmbedder(encoder_dir)
    out = TopicReader(broker.bootstrap_servers, topics["item-embeddings"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    try:
        with running(cfg):
            records = out.read_until(lambda rs: len(rs) >= len(GOOD), TIMEOUT_S)
            assert len(records) == len(GOOD), f"got {len(records)} embeddings of {len(GOOD)}"

            # A new item announced while the job runs: its embedding arrives within seconds.
            new = {"item_id": f"new-{run}", "title": "A brand new release (2026)", "categories": ["Drama"]}
            producer = Producer(broker.bootstrap_servers)
            sent_at = int(time.time() * 1000)
            producer.send(topics["item-catalog"], new["item_id"], new, timestamp_ms=sent_at)
            producer.flush()
            producer.close()
            records = out.read_until(lambda rs: any(r["key"] == new["item_id"] for r in rs), 60, settle_s=0)
            arrival = [r for r in records if r["key"] == new["item_id"]]
            assert arrival, "the new item's embedding did not arrive within 60 s"
            latency_ms = arrival[0]["received_at"] - sent_at
            print(f"item-catalog record -> embedding consumed: {latency_ms} ms")
            assert 0 <= latency_ms < 10_000
            # Re-announced unchanged: not embedded again; then changed: embedded (same key, so in this order).
            changed = {**GOOD[0], "title": "Toy Story (1995), restored edition"}
            produce(broker.bootstrap_servers, topics["item-catalog"], [("m-1", GOOD[0]), ("m-1", changed)])
            records = out.read_until(lambda rs: sum(r["key"] == "m-1" for r in rs) >= 2, 60, settle_s=0)
            # A tombstone on item-catalog deletes the item: a tombstone under its key on item-embeddings.
            produce(broker.bootstrap_servers, topics["item-catalog"], [("p-9", None)])
            records = out.read_until(lambda rs: any(r["value"] is None for r in rs), 60, settle_s=0)
            dead_records = dead.read_until(lambda rs: len(rs) >= len(BAD), 60)
    finally:
        out.close()
        dead.close()

    tombstones = [r for r in records if r["value"] is None]
    assert [r["key"] for r in tombstones] == ["p-9"] and records[-1] is tombstones[0]
    m1 = [r["value"] for r in records if r["key"] == "m-1"]
    assert len(m1) == 2, "the unchanged re-announcement was not embedded again, the change was"
    assert m1[1]["text_sha256"] == text_sha256(item_text(catalog_item(changed)))
    by_item = {r["key"]: r["value"] for r in records if r["value"] is not None and r["key"] != "m-1"}
    by_item["m-1"] = m1[0]
    assert len(records) == len(GOOD) + 1 + 1 + 1, "one embedding per item, one per change, one tombstone"
    for value in GOOD + [new]:
        item = catalog_item(value)
        record = by_item[item.item_id]
        text = item_text(item)
        assert record["item_id"] == item.item_id and record["model"] == offline.name and record["dim"] == 384
        assert record["text_sha256"] == text_sha256(text)
        vector = decode_embedding(record)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        # The job's vector is the offline vector of the same text (one code path).
        assert float(np.abs(vector - offline.embed([text])[0]).max()) < 1e-5
        assert record["emitted_at"] >= record["ts"] or value.get("ts") is not None
    assert by_item["m-2"]["ts"] == 1_700_000_000_000  # the catalog's own ts wins over the record timestamp

    reasons = sorted(r["value"]["reason"] for r in dead_records)
    assert reasons == sorted(reason for _, _, reason in BAD)
    assert all(r["value"]["topic"] == topics["item-catalog"] for r in dead_records)
