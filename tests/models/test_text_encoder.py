"""The item-text encoder: torch rebuild of all-MiniLM-L6-v2, ONNX parity gate, pipeline checks, offline embeddings."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from models.errors import DataError, ExportError, ModelError
from models.item_embeddings import (ItemEmbeddings, embed_catalog, load_item_embeddings, ml1m_catalog,
                                    save_item_embeddings)
from models.text_encoder import (PARITY_TEXTS, BertConfig, ensure_encoder, fetch_source, load_minilm,
                                 parity_gate)
from udfs.embeddings import CatalogItem, TextEmbedder, item_text, text_sha256, tokenize


@pytest.fixture(scope="module")
def source():
    return fetch_source()


@pytest.fixture(scope="module")
def eager(source):
    return load_minilm(source)


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder(str(ensure_encoder()))


def test_served_onnx_matches_eager_torch(eager, embedder):
    # The gate the export ran, again on the served files: real item texts, batched and one by one.
    assert parity_gate(eager, embedder) <= 1e-5
    encoder = json.loads((ensure_encoder() / "encoder.json").read_text())
    assert encoder["dim"] == 384 and encoder["max_tokens"] == 256 and encoder["parity_max_abs_diff"] <= 1e-5


def test_gate_catches_a_wrong_weight(source, embedder):
    broken = load_minilm(source)
    with torch.no_grad():
        broken.layers[2].value.weight.mul_(-1.0)  # a transposed or mis-mapped tensor looks like this
    with pytest.raises(ExportError, match="parity failed"):
        parity_gate(broken, embedder)


def test_padding_does_not_change_a_vector(eager, embedder):
    ids, mask = (torch.from_numpy(a) for a in tokenize(
        embedder.tokenizer, [PARITY_TEXTS[0], PARITY_TEXTS[1] + " and a much longer tail of words"]))
    with torch.no_grad():
        batched = eager(ids, mask)[0]
        alone = eager(ids[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())])[0]
    assert float((batched - alone).abs().max()) < 1e-5


def test_pipeline_checks_refuse_other_models(source, tmp_path):
    other = tmp_path / "src"
    shutil.copytree(source, other, ignore=shutil.ignore_patterns("model.safetensors"))
    pooling = other / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_cls_token": True}))
    with pytest.raises(ModelError, match="only mean pooling"):
        load_minilm(other)
    config = other / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "roberta"}))
    with pytest.raises(ModelError, match="expected a BERT"):
        BertConfig.from_json(config)


def test_offline_catalog_round_trip(embedder, tmp_path):
    catalog = [CatalogItem("1", "Heat (1995)", None, ("Action", "Crime")),
               CatalogItem("2", "Casino (1995)", None, ("Drama", "Thriller")),
               CatalogItem("3", None, "A toy cowboy and a space ranger", ("Animation",))]
    emb = embed_catalog(catalog, embedder, batch_size=2, chunk=2, progress=False)
    assert emb.matrix.shape == (3, 384) and emb.item_ids == ["1", "2", "3"]
    np.testing.assert_allclose(emb.matrix, embedder.embed([item_text(c) for c in catalog]), atol=1e-5)
    assert emb.text_sha256 == [text_sha256(item_text(c)) for c in catalog]
    back = load_item_embeddings(save_item_embeddings(emb, tmp_path / "out"))
    assert back.item_ids == emb.item_ids and back.model == embedder.name
    np.testing.assert_array_equal(back.matrix, emb.matrix)
    with pytest.raises(DataError, match="duplicate item ids"):
        embed_catalog(catalog + catalog[:1], embedder, progress=False)
    with pytest.raises(DataError, match="no text"):
        embed_catalog([CatalogItem("9", " ")], embedder, progress=False)
    np.save(tmp_path / "out" / "embeddings.npy", emb.matrix[:2])
    with pytest.raises(DataError, match="does not match"):
        load_item_embeddings(tmp_path / "out")


def test_ml1m_adapter_builds_title_and_genres():
    from models.data import ItemTable

    table = ItemTable(titles=np.array(["Toy Story (1995)", "Heat (1995)"], dtype=object),
                      years=np.array([1995.0, 1995.0]),
                      genres=np.array(["Animation Children's Comedy", "Action Crime Thriller"], dtype=object))
    catalog = ml1m_catalog(table)
    assert [c.item_id for c in catalog] == ["1", "2"]
    assert item_text(catalog[0]) == "Toy Story (1995). Animation, Children's, Comedy"
    assert ItemEmbeddings(["7", "3"], np.zeros((2, 2), np.float32), ["x", "y"], "m").index() == {"7": 0, "3": 1}
