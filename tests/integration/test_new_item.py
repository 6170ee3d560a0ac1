"""A new item is rankable by content within seconds: item-catalog -> item-embedding job -> item-embeddings
-> the ranking job's broadcast table -> a ranked list that scores the item from its text and says why.

Both jobs run on the PyFlink minicluster against the real broker; the served model is the
content-aware default (sasrec/v4). The new item's served score is checked against the same
computation done offline (ONNX user_state, the model's text projection, the offline encoder).
"""
from __future__ import annotations

import time
import uuid

import numpy as np
import onnxruntime as ort
import pytest

from jobs.config import ItemEmbedConfig, JobConfig
from jobs.item_embed_job import create_item_topics, running as embedding_job
from jobs.kafka_io import Producer, TopicReader, produce
from jobs.rerank_job import running as ranking_job
from models.artifact import load_artifact, left_pad
from models.text_encoder import ensure_encoder
from udfs.content import REASON_NEW, TextProjection
from udfs.embeddings import CatalogItem, TextEmbedder, item_text

pytestmark = pytest.mark.integration
TIMEOUT_S = 180  # the encoder's Python worker starts and loads a 90 MB model on 2 shared cores

# Texts for a few of the model's own item ids (any text will do: the model projects whatever the
# encoder makes of it); the user's history is children's animation.
HISTORY_TEXT = [("Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
                ("A Bug's Life (1998)", ["Animation", "Children's", "Comedy"]),
                ("The Lion King (1994)", ["Animation", "Children's", "Musical"])]
OTHER_TEXT = [("Heat (1995)", ["Action", "Crime", "Thriller"]), ("Casino (1995)", ["Drama", "Thriller"]),
              ("Seven (1995)", ["Crime", "Thriller"]), ("Alien (1979)", ["Horror", "Sci-Fi"]),
              ("Fargo (1996)", ["Crime", "Drama", "Thriller"]), ("Psycho (1960)", ["Horror", "Thriller"])]
NEW_TEXT = ("Toy Story 5 (2026)", ["Animation", "Children's", "Comedy"])


def catalog_record(item_id: str, title: str, categories: list[str]) -> dict:
    return {"item_id": item_id, "title": title, "categories": categories}


def reasons_of(record: dict) -> dict[str, dict]:
    return {i["item_id"]: i.get("reason", {}) for i in record["value"]["items"]}


def test_new_item_is_ranked_by_content_within_seconds(broker, topics, model_dir):
    artifact = load_artifact(model_dir)
    if not artifact.config.get("text"):
        pytest.skip(f"{model_dir} is an ID-only model")
    run = uuid.uuid4().hex[:8]
    encoder_dir = str(ensure_encoder())
    embed_cfg = ItemEmbedConfig(bootstrap_servers=broker.bootstrap_servers, catalog_topic=f"item-catalog-{run}",
                                embeddings_topic=f"item-embeddings-{run}", dead_letter_topic=topics["dead-letters"],
                                group_id=f"it-embed-{run}", encoder_dir=encoder_dir, job_name=f"it-embed-{run}",
                                checkpoint_interval_ms=1000)
    create_item_topics(broker.bootstrap_servers, embed_cfg)
    rank_cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["user-events"],
                         requests_topic=topics["rank-requests"], output_topic=topics["ranked-lists"],
                         dead_letter_topic=topics["dead-letters"], embeddings_topic=embed_cfg.embeddings_topic,
                         model_updates_topic=f"model-updates-{run}", group_id=f"it-rank-{run}", model_dir=model_dir,
                         job_name=f"it-rank-{run}", checkpoint_interval_ms=1000,
                         explain_min_similarity=-1.0)  # any history item with a vector can be "because"
    vocab = sorted(artifact.item_to_index, key=artifact.item_to_index.get)
    history_ids, other_ids = vocab[:3], vocab[10:16]
    new_id = f"new-release-{run}"
    assert new_id not in artifact.item_to_index
    user = f"kid-{run}"
    events = [(user, {"user_id": user, "item_id": i, "event": "rate", "ts": 1_000 + n})
              for n, i in enumerate(history_ids)]
    produce(broker.bootstrap_servers, topics["user-events"], events)
    known = [catalog_record(i, t, c) for i, (t, c) in zip(history_ids + other_ids, HISTORY_TEXT + OTHER_TEXT)]
    produce(broker.bootstrap_servers, embed_cfg.catalog_topic, [(r["item_id"], r) for r in known])

    candidates = other_ids + [new_id]
    out = TopicReader(broker.bootstrap_servers, topics["ranked-lists"])
    dead = TopicReader(broker.bootstrap_servers, topics["dead-letters"])
    producer = Producer(broker.bootstrap_servers)
    sent = 0
    last: list[dict] = []

    def ask_until(predicate, timeout_s: float) -> dict | None:
        """Send a request every 200 ms until a ranked list satisfies `predicate`; that list, or None."""
        nonlocal sent
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sent += 1
            producer.send(topics["rank-requests"], user, {"request_id": f"r{sent}", "user_id": user,
                                                          "candidates": candidates, "k": len(candidates),
                                                          "ts": int(time.time() * 1000)})
            producer.flush()
            for r in out.poll(timeout_ms=200):
                last[:] = [r]
                if predicate(r):
                    return r
        return None

    try:
        with embedding_job(embed_cfg), ranking_job(rank_cfg):
            # Warm: the known items' vectors have reached the scorer (their reasons compare to history).
            warm = ask_until(lambda r: any(x.get("kind") == "similar" for x in reasons_of(r).values()), TIMEOUT_S)
            assert warm is not None, f"no ranked list used the item embeddings; last: {last}"
            assert reasons_of(warm)[new_id]["kind"] == REASON_NEW and "by_content" not in reasons_of(warm)[new_id]

            # A new item announced while both jobs run: how long until a ranked list scores it from its text.
            announced = int(time.time() * 1000)
            producer.send(embed_cfg.catalog_topic, new_id, catalog_record(new_id, *NEW_TEXT), timestamp_ms=announced)
            producer.flush()
            ranked = ask_until(lambda r: reasons_of(r)[new_id].get("by_content") is True, 60)
            assert ranked is not None, f"the new item was never scored by content; last: {last}"
            rankable_ms = ranked["received_at"] - announced
            print(f"item-catalog record -> first ranked list scoring it by content: {rankable_ms} ms")
            assert 0 <= rankable_ms < 15_000

            # A broken vector on item-embeddings is refused with its reason; scoring goes on.
            producer.send(embed_cfg.embeddings_topic, "broken", {"item_id": "broken", "model": "x", "dim": 3,
                                                                 "encoding": "float32-le-base64", "embedding": "%%"})
            producer.flush()
            letters = dead.read_until(lambda rs: any(r["value"].get("reason") == "bad_embedding" for r in rs), 60)
            assert any(r["value"].get("reason") == "bad_embedding" for r in letters)

            # Deleted from the catalog: the tombstone reaches the scorer, and the item is OOV again.
            producer.send(embed_cfg.catalog_topic, new_id, None)
            producer.flush()
            gone = ask_until(lambda r: "by_content" not in reasons_of(r)[new_id], 60)
            assert gone is not None, "the tombstone did not reach the scorer"
    finally:
        producer.close()
        out.close()
        dead.close()

    # The served score of the new item is what the same model, projection and encoder give offline.
    embedder = TextEmbedder(encoder_dir)
    texts = [item_text(CatalogItem(item_id=i, title=t, categories=tuple(c)))
             for i, (t, c) in zip(history_ids + [new_id], HISTORY_TEXT + [NEW_TEXT])]
    vectors = embedder.embed(texts)
    session = ort.InferenceSession(str(artifact.onnx_path), providers=["CPUExecutionProvider"])
    idx = [[artifact.item_to_index[i] for i in history_ids]]
    ev = [[artifact.event_to_index["rate"]] * len(history_ids)]
    cand = np.array([[artifact.item_to_index[i] for i in other_ids] + [1]], np.int64)
    scores, state = session.run(["scores", "user_state"], {"hist_items": left_pad(idx, len(history_ids)),
                                                           "hist_events": left_pad(ev, len(history_ids)),
                                                           "candidates": cand})
    projection = TextProjection.load(model_dir, artifact.config)
    expected = float((projection.project(vectors[-1:]) @ state[0])[0])
    served = {i["item_id"]: i for i in ranked["value"]["items"]}
    assert served[new_id]["score"] == pytest.approx(expected, abs=1e-4)
    for item_id, score in zip(other_ids, scores[0]):
        assert served[item_id]["score"] == pytest.approx(float(score), abs=1e-4)
    # Its reason names the history item nearest to it in the encoder's space.
    sims = vectors[:-1] @ vectors[-1]
    assert served[new_id]["reason"]["because"] == history_ids[int(np.argmax(sims))]
    assert ranked["value"]["items"] == sorted(ranked["value"]["items"], key=lambda x: -x["score"])
