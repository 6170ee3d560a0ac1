"""The item-embedding UDF's batch logic (udfs/embed_functions.py), without a JVM."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models.text_encoder import ensure_encoder
from udfs.embed_functions import _EMBEDDING_PREFIX, embed_batch
from udfs.embeddings import TextEmbedder, decode_embedding, text_sha256


class FailsOn(TextEmbedder):
    """The real encoder, except that any batch containing `poison` raises (a fault on one item)."""

    def __init__(self, encoder_dir: str, poison: str) -> None:
        super().__init__(encoder_dir)
        self.poison = poison

    def embed(self, texts, batch_size=32):
        if self.poison in texts:
            raise RuntimeError("encoder fault")
        return super().embed(texts, batch_size)


@pytest.fixture(scope="module")
def encoder_dir() -> str:
    return str(ensure_encoder())


def rows(texts):
    n = len(texts)
    return ([f"i{k}" for k in range(n)], texts, [text_sha256(t) for t in texts], [1000 + k for k in range(n)],
            [("item-catalog", k % 2, 10 + k) for k in range(n)])


def test_batch_gives_one_record_per_row_in_order(encoder_dir):
    embedder = TextEmbedder(encoder_dir)
    texts = ["Heat (1995). Action", "x", "Toy Story (1995). Animation, Comedy"]
    out, failed = embed_batch(embedder, *rows(texts), batch_size=2)
    assert failed == 0 and len(out) == 3
    values = [json.loads(v) for v in out]
    assert all(v.startswith(_EMBEDDING_PREFIX) for v in out)
    assert [v["item_id"] for v in values] == ["i0", "i1", "i2"] and [v["ts"] for v in values] == [1000, 1001, 1002]
    np.testing.assert_allclose(np.stack([decode_embedding(v) for v in values]), embedder.embed(texts), atol=1e-5)


def test_a_failing_item_becomes_a_dead_letter_and_the_rest_flow(encoder_dir):
    texts = ["good one", "poison", "good two"]
    out, failed = embed_batch(FailsOn(encoder_dir, "poison"), *rows(texts), batch_size=32)
    assert failed == 1
    assert out[0].startswith(_EMBEDDING_PREFIX) and out[2].startswith(_EMBEDDING_PREFIX)
    dead = json.loads(out[1])
    assert not out[1].startswith(_EMBEDDING_PREFIX)
    assert (dead["topic"], dead["partition"], dead["offset"], dead["reason"]) == ("item-catalog", 1, 11, "encoder_failed")
    assert "encoder fault" in dead["error"] and dead["payload"] == "poison"


def test_tombstones_pass_through_in_place(encoder_dir):
    texts = ["kept", None, "also kept"]
    item_ids, _, hashes, ts, sources = rows(["kept", "x", "also kept"])
    out, failed = embed_batch(TextEmbedder(encoder_dir), item_ids, texts, hashes, ts, sources, batch_size=32)
    assert failed == 0 and out[1] is None
    assert json.loads(out[0])["item_id"] == "i0" and json.loads(out[2])["item_id"] == "i2"
