"""Content on the request path (udfs/content.py): new items scored from text, reasons, MMR order."""
from __future__ import annotations

import json

import numpy as np
import pytest

from udfs.content import (REASON_NEW, REASON_PERSONAL, REASON_SIMILAR, REASON_TRENDING, PresentSettings,
                          TextProjection, explain, fill_new_items, present)
from udfs.embeddings import EmbeddingTable, embedding_record
from udfs.explain import mmr_order

ENCODER = "enc/v1"


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def table_of(vectors: dict[str, np.ndarray]) -> EmbeddingTable:
    table = EmbeddingTable(ENCODER, 3)
    for item_id, v in vectors.items():
        table.update(embedding_record(item_id, ENCODER, np.asarray(v, np.float32), "h", 0, 0))
    return table


def projection(d: int = 2, t: int = 3, seed: int = 0) -> TextProjection:
    rng = np.random.default_rng(seed)
    return TextProjection(rng.standard_normal((d, t)).astype(np.float32), rng.standard_normal(d).astype(np.float32),
                          ENCODER)


def test_projection_loads_from_a_model_dir_and_refuses_a_mismatch(tmp_path):
    p = projection()
    np.savez(tmp_path / "text_projection.npz", weight=p.weight, bias=p.bias)
    loaded = TextProjection.load(tmp_path, {"text": {"model": ENCODER, "dim": 3}})
    np.testing.assert_array_equal(loaded.weight, p.weight)
    assert loaded.encoder == ENCODER and loaded.text_dim == 3
    assert TextProjection.load(tmp_path, {}) is None  # an ID-only model
    with pytest.raises(ValueError, match="does not match"):
        TextProjection.load(tmp_path, {"text": {"model": ENCODER, "dim": 4}})


def test_fill_new_items_replaces_only_oov_candidates_with_text():
    p = projection()
    state = np.array([1.0, -2.0], np.float32)
    vectors = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    scores = np.array([5.0, 0.5, 0.5], np.float32)
    is_oov = np.array([False, True, True])
    found = np.array([True, True, False])  # the last new item has no text: keeps the OOV score
    out, by_content = fill_new_items(scores, state, p, is_oov, vectors, found)
    assert by_content.tolist() == [False, True, False]
    assert out[0] == 5.0 and out[2] == 0.5
    np.testing.assert_allclose(out[1], (p.weight @ vectors[1] + p.bias) @ state, rtol=1e-6)
    same, none = fill_new_items(scores, None, p, is_oov, vectors, found)  # ID-only: unchanged
    assert same is scores and not none.any()


def test_explain_precedence_new_similar_trending_personal():
    history = unit([[1, 0, 0]])
    shown = unit([[0, 0, 1], [0.95, 0.05, 0], [0, 1, 0], [0, 1, 0.1]])
    reasons = explain(["n", "s", "t", "p"], shown, np.ones(4, bool), np.array([True, False, False, False]),
                      ["h1"], history, np.ones(1, bool), trending=np.array([False, False, True, False]),
                      titles={"h1": "Heat (1995)"})
    assert [r["kind"] for r in reasons] == [REASON_NEW, REASON_SIMILAR, REASON_TRENDING, REASON_PERSONAL]
    assert reasons[1]["because"] == "h1" and reasons[1]["text"] == "because you watched Heat (1995)"
    assert 0.9 < reasons[1]["similarity"] <= 1.0


def test_present_without_a_table_is_the_plain_top_k():
    scores = np.array([0.1, 0.9, 0.5, 0.9], np.float32)
    out = present(["a", "b", "c", "d"], scores, np.array([False, False, True, False]), None, None, None,
                  ["a", "x", "y"], 3, PresentSettings())  # a history of several items, none with a vector
    assert out.order.tolist() == [1, 3, 2]  # ties keep request order
    assert [r["kind"] for r in out.reasons] == [REASON_PERSONAL, REASON_PERSONAL, REASON_NEW]
    assert not out.by_content.any()
    quiet = present(["a", "b"], scores[:2], np.zeros(2, bool), None, None, None, [], None,
                    PresentSettings(explain=False))
    assert quiet.reasons is None and quiet.order.tolist() == [1, 0]


def test_present_ranks_a_new_item_by_its_text_and_explains_it():
    # The user's taste (state) points at text direction x; the new item's text is close to x, so
    # its content score beats a known item with a mediocre model score.
    p = TextProjection(np.eye(2, 3, dtype=np.float32), np.zeros(2, np.float32), ENCODER)
    state = np.array([3.0, 0.0], np.float32)
    table = table_of({"old": unit([1, 0.1, 0]), "new": unit([1, 0, 0.05]), "meh": unit([0, 1, 0]),
                      "hist": unit([1, 0, 0])})
    scores = np.array([1.0, -9.0, 0.5], np.float32)  # "new" has the graph's OOV score
    out = present(["meh", "new", "old"], scores, np.array([False, True, False]), state, p, table, ["hist"], 3,
                  PresentSettings())
    assert out.by_content.tolist() == [False, True, False]
    assert out.order.tolist()[0] == 1
    first = out.reasons[0]
    assert first["kind"] == REASON_NEW and first["by_content"] is True and first["because"] == "hist"
    assert out.order.tolist() == [1, 0, 2]
    assert out.reasons[1]["kind"] == REASON_PERSONAL  # "meh" is far from the history item
    assert out.reasons[2]["kind"] == REASON_SIMILAR and out.reasons[2]["because"] == "hist"


def test_present_mmr_matches_mmr_order_and_lambda_one_is_the_score_order():
    rng = np.random.default_rng(3)
    ids = [f"i{j}" for j in range(12)]
    vecs = unit(rng.standard_normal((12, 3)))
    table = table_of(dict(zip(ids, vecs)))
    scores = rng.standard_normal(12).astype(np.float32)
    oov = np.zeros(12, bool)
    mmr = present(ids, scores, oov, None, None, table, [], 5, PresentSettings(diversity_lambda=0.6))
    assert mmr.order.tolist() == mmr_order(scores.astype(np.float64), vecs, 5, 0.6).tolist()
    plain = present(ids, scores, oov, None, None, table, [], 5, PresentSettings(diversity_lambda=1.0))
    assert plain.order.tolist() == np.argsort(-scores, kind="stable")[:5].tolist()


def test_settings_refuse_out_of_range_values():
    with pytest.raises(ValueError, match="diversity_lambda"):
        PresentSettings(diversity_lambda=1.5)
    with pytest.raises(ValueError, match="min_similarity"):
        PresentSettings(min_similarity=2.0)


def test_present_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match="2 candidates"):
        present(["a", "b"], np.zeros(3, np.float32), np.zeros(3, bool), None, None, None, [], None, PresentSettings())


def test_embedding_table_refuses_non_finite_vectors():
    table = EmbeddingTable(ENCODER, 3)
    record = json.loads(embedding_record("x", ENCODER, np.array([np.nan, 0, 0], np.float32), "h", 0, 0))
    with pytest.raises(ValueError, match="non-finite"):
        table.update(record)
    assert len(table) == 0


def test_served_content_model_scores_new_items_on_the_known_items_scale():
    """sasrec/v4: a known item scored as if it were new (text only) stays correlated with its full score."""
    from pathlib import Path

    from models.item_embeddings import load_item_embeddings
    from udfs.scoring import OnnxScorer

    emb_dir = Path(__file__).resolve().parents[2] / "data" / "item-embeddings" / "ml-1m"
    if not (emb_dir / "embeddings.npy").is_file():
        pytest.skip("ML-1M item embeddings not built (python -m models.item_embeddings)")
    scorer = OnnxScorer(str(Path(__file__).resolve().parents[2] / "models" / "sasrec" / "v4"),
                        ["CPUExecutionProvider"])
    assert scorer.projection is not None
    emb = load_item_embeddings(emb_dir)
    rows = emb.index()
    items = [i for i in list(scorer.artifact.item_to_index)[:400] if i in rows]
    history = items[:30]
    candidates = items[30:230]
    scores, is_oov, state = scorer.score_request(history, ["rate"] * len(history), candidates)
    assert not is_oov.any() and state is not None and state.shape == (scorer.projection.weight.shape[0],)
    text = emb.matrix[[rows[i] for i in candidates]]
    by_text = (scorer.projection.project(text) @ state)
    assert np.isfinite(by_text).all()
    # Text alone explains part of the ranking (trained with ID-row dropout for exactly this); a
    # random projection of the same texts explains none of it.
    trained = np.corrcoef(by_text, scores)[0, 1]
    rng = np.random.default_rng(0)
    random = [np.corrcoef((text @ rng.standard_normal(scorer.projection.weight.T.shape)) @ state, scores)[0, 1]
              for _ in range(20)]
    assert trained > 0.1 and trained > np.percentile(np.abs(random), 95), (trained, random)
