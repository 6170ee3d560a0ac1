"""item-catalog / item-embeddings contracts and the served text encoder (udfs/embeddings.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from udfs.embeddings import (EMBEDDING_ENCODING, CatalogItem, TextEmbedder, decode_embedding, embedding_record,
                             item_text, parse_catalog_item, text_sha256)
from udfs.errors import InvalidRecord
from udfs.records import Reason


def cat(**kw) -> str:
    base = {"item_id": "i1", "title": "Heat (1995)", "categories": ["Action", "Crime"], "ts": 1000}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize("item, text", [
    (CatalogItem("1", "Heat (1995)", None, ("Action", "Crime")), "Heat (1995). Action, Crime"),
    (CatalogItem("1", "  Heat\n (1995) ", "A  heist.", ()), "Heat (1995). A heist."),
    (CatalogItem("1", None, None, (" Kitchen ", "", "Knives")), "Kitchen, Knives"),
    (CatalogItem("1", "", "only text", ()), "only text"),
    (CatalogItem("1", " ", None, (" ",)), ""),
])
def test_item_text(item, text):
    assert item_text(item) == text


def test_parse_catalog_item_ok():
    item = parse_catalog_item(cat(text="A heist.", extra={"x": 1}).encode(), b"i1")
    assert item == CatalogItem("i1", "Heat (1995)", "A heist.", ("Action", "Crime"), 1000)
    assert parse_catalog_item(cat(ts=..., title=..., categories=["Drama"])).ts is None
    assert parse_catalog_item(cat(), None).item_id == "i1"  # a null key is accepted


@pytest.mark.parametrize("raw, key, reason, says", [
    (None, None, Reason.NULL_VALUE, "null value"),
    (b"\xff", None, Reason.NOT_UTF8, "not UTF-8"),
    ("{", None, Reason.BAD_JSON, "invalid JSON"),
    ("[1]", None, Reason.NOT_OBJECT, "JSON object"),
    (cat(item_id=...), None, Reason.MISSING_FIELD, "'item_id'"),
    (cat(item_id=" "), None, Reason.EMPTY_ID, "'item_id' is empty"),
    (cat(item_id="a\x00b"), None, Reason.BAD_ID, "U+0000"),
    (cat(item_id="x" * 300), None, Reason.ID_TOO_LONG, "above the limit"),
    (cat(title=5), None, Reason.WRONG_TYPE, "'title' must be str"),
    (cat(text=["x"]), None, Reason.WRONG_TYPE, "'text' must be str"),
    (cat(categories="Drama"), None, Reason.WRONG_TYPE, "'categories' must be list"),
    (cat(categories=["ok", 3]), None, Reason.WRONG_TYPE, "'categories[1]'"),
    (cat(categories=["c"] * 101), None, Reason.WRONG_TYPE, "above 100"),
    (cat(title=" ", categories=[], text="\n"), None, Reason.MISSING_FIELD, "no text"),
    (cat(title=..., categories=...), None, Reason.MISSING_FIELD, "no text"),
    (cat(ts=-1), None, Reason.TS_OUT_OF_RANGE, "'ts'"),
    (cat(ts="now"), None, Reason.WRONG_TYPE, "'ts' must be int"),
    (cat(title=float("nan")), None, Reason.NON_FINITE, "'title'"),
    (cat(), b"other", Reason.KEY_MISMATCH, "differs from field 'item_id'"),
    (cat(), b"\xff", Reason.KEY_MISMATCH, "differs from field 'item_id'"),
    (" " * 300_000, None, Reason.VALUE_TOO_LARGE, "above the limit"),
])
def test_parse_catalog_item_rejects(raw, key, reason, says):
    with pytest.raises(InvalidRecord) as err:
        parse_catalog_item(raw, key)
    assert err.value.reason == reason
    assert says in str(err.value)


def test_embedding_record_round_trip():
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    value = json.loads(embedding_record("i1", "enc/v1", vector, text_sha256("t"), 5, 7))
    assert value == {"item_id": "i1", "model": "enc/v1", "dim": 384, "encoding": EMBEDDING_ENCODING,
                     "embedding": value["embedding"], "text_sha256": text_sha256("t"), "ts": 5, "emitted_at": 7}
    assert np.array_equal(decode_embedding(value), vector)
    assert len(value["embedding"]) == 2048  # 384 float32 in base64
    with pytest.raises(ValueError, match="has 384 values, dim says 3"):
        decode_embedding({**value, "dim": 3})
    with pytest.raises(ValueError, match="unknown embedding encoding"):
        decode_embedding({**value, "encoding": "json"})


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    from models.text_encoder import ensure_encoder

    return TextEmbedder(str(ensure_encoder()))


def test_published_similarities(embedder):
    # The all-MiniLM-L6-v2 cosine similarities printed in the sentence-transformers quickstart
    # (sbert.net): an independent check that weights, tokenizer, pooling and norm match the original.
    v = embedder.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sims = v @ v.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=1e-4)
    assert sims[0, 2] == pytest.approx(0.1046, abs=1e-4)
    assert sims[1, 2] == pytest.approx(0.1411, abs=1e-4)


def test_embed_order_and_batching(embedder):
    texts = ["Heat (1995). Action, Crime, Thriller", "x", "Toy Story (1995). Animation",
             " ".join(["long text"] * 400), "Casino (1995). Drama"]
    one_call = embedder.embed(texts, batch_size=64)
    assert one_call.shape == (5, 384) and one_call.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one_call, axis=1), 1.0, atol=1e-5)
    for batch_size in (1, 2, 3):  # other batchings pad differently: same vectors, same order
        np.testing.assert_allclose(embedder.embed(texts, batch_size=batch_size), one_call, atol=1e-5)
    singles = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(singles, one_call, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_missing_encoder_dir_is_a_config_error(tmp_path):
    from udfs.errors import ConfigError

    with pytest.raises(ConfigError, match="not a text encoder directory"):
        TextEmbedder(str(tmp_path))


def test_embedding_table_keeps_the_latest_vector():
    from udfs.embeddings import EmbeddingTable

    rng = np.random.default_rng(3)
    table = EmbeddingTable("enc/v1", 4)
    first, second = rng.standard_normal((2, 4)).astype(np.float32)
    for n in range(40):  # grows past its first allocation
        table.update(embedding_record(f"i{n}", "enc/v1", first, "h", 1, 2))
    assert table.update(embedding_record("i3", "enc/v1", second, "h2", 3, 4).encode()) == "i3"
    vectors, found = table.lookup(["i3", "nope", "i39"])
    assert len(table) == 40 and found.tolist() == [True, False, True]
    np.testing.assert_array_equal(vectors, np.stack([second, np.zeros(4, np.float32), first]))
    with pytest.raises(ValueError, match="model 'other/v2'"):
        table.update(embedding_record("x", "other/v2", first, "h", 1, 2))
    with pytest.raises(ValueError, match="the table 4"):
        table.update(embedding_record("x", "enc/v1", np.zeros(3, np.float32), "h", 1, 2))


@pytest.mark.parametrize("raw, key, deleted", [
    (None, b"i1", "i1"),
    (None, "i1", "i1"),
    (cat(), b"i1", None),       # a value: an update, not a deletion
    (None, None, None),         # no key: nothing to delete (null_value)
    (None, b"  ", None),        # blank key
    (None, b"\xff", None),      # not UTF-8
    (None, b"x" * 300, None),   # above the id limit
])
def test_tombstone_item(raw, key, deleted):
    from udfs.embeddings import tombstone_item

    assert tombstone_item(raw, key) == deleted


def test_embedding_table_delete_moves_the_last_row():
    from udfs.embeddings import EmbeddingTable

    table = EmbeddingTable("enc/v1", 2)
    vectors = {f"i{n}": np.full(2, n, np.float32) for n in range(5)}
    for item, v in vectors.items():
        table.update(embedding_record(item, "enc/v1", v, "h", 1, 2))
    assert table.delete("i1") and not table.delete("i1") and table.delete("i4")
    assert len(table) == 3
    got, found = table.lookup(["i0", "i1", "i2", "i3", "i4"])
    assert found.tolist() == [True, False, True, True, False]
    np.testing.assert_array_equal(got[[0, 2, 3]], np.stack([vectors["i0"], vectors["i2"], vectors["i3"]]))
    table.update(embedding_record("i9", "enc/v1", np.full(2, 9, np.float32), "h", 1, 2))
    np.testing.assert_array_equal(table.lookup(["i9", "i3"])[0], [[9, 9], [3, 3]])
