from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifact import load_artifact
from models.split import build_vocab, leave_one_out
from models.errors import ModelError
from models.evaluate import check_reproduces
from models.sasrec import SASRec, SASRecConfig
from models.train import TrainConfig, run, train

MODEL = {"max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0}


def _split(ds):
    vocab = build_vocab(ds.log, ds.catalog)
    return leave_one_out(ds.log, vocab["items"], vocab["events"])


def _fresh(split) -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=split.n_items, **MODEL))


@pytest.mark.parametrize("loss", ["ce-sampled", "ce-full", "bce"])
def test_loss_goes_down(synthetic_dataset, tmp_path: Path, loss: str) -> None:
    split = _split(synthetic_dataset)
    cfg = TrainConfig(loss=loss, epochs=6, batch_size=16, n_negatives=16, lr=1e-2, patience=10)
    _, state = train(_fresh(split), split, cfg, tmp_path, progress=False)
    losses = [h["loss"] for h in state.history]
    assert losses[-1] < losses[0]
    assert state.best_epoch >= 1 and (tmp_path / "best.pt").is_file()


def test_resume_is_exact(synthetic_dataset, tmp_path: Path) -> None:
    """Train 4 epochs straight vs 2 + resume 2: identical weights and history."""
    split = _split(synthetic_dataset)
    cfg = TrainConfig(epochs=4, batch_size=16, n_negatives=16, lr=1e-2, patience=10)
    straight, s1 = train(_fresh(split), split, cfg, tmp_path / "a", progress=False)
    train(_fresh(split), split, TrainConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path / "b", progress=False)
    resumed, s2 = train(_fresh(split), split, cfg, tmp_path / "b", resume=True, progress=False)
    assert s2.epoch == 4
    assert [h["loss"] for h in s1.history] == [h["loss"] for h in s2.history]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_rejects_other_config(synthetic_dataset, tmp_path: Path) -> None:
    split = _split(synthetic_dataset)
    train(_fresh(split), split, TrainConfig(epochs=1, batch_size=16, n_negatives=8), tmp_path, progress=False)
    other = SASRec(SASRecConfig(n_items=split.n_items, **{**MODEL, "d_model": 8}))
    with pytest.raises(ModelError, match="config"):
        train(other, split, TrainConfig(epochs=2), tmp_path, resume=True, progress=False)


def test_artifact_contents_and_metrics_reproduce(tiny_artifact: Path, synthetic_dataset) -> None:
    art = load_artifact(tiny_artifact)
    cfg = art.config
    assert cfg["onnx_opset"] >= 17 and cfg["trained_on"]["train_until_ms"] is None and cfg["created_at"]
    assert cfg["onnx_parity_max_abs_diff"] <= 1e-5
    m = art.metrics
    for block in (m["syn"], m["baselines"]["most_popular"]["syn"], m["baselines"]["item_knn"]["syn"],
                  m["int8"]["syn"]):
        for proto in ("uniform100", "pop100", "full"):
            assert set(block[proto]) == {"ndcg@10", "hr@10", "mrr", "users"}
            assert 0.0 <= block[proto]["ndcg@10"] <= 1.0
    assert m["latency_ms"]["fp32"] and m["latency_ms"]["int8"]
    assert check_reproduces(tiny_artifact, synthetic_dataset) == []
    assert (tiny_artifact / "curves.png").stat().st_size > 1000


def test_unseen_event_types_are_tied(tiny_artifact: Path) -> None:
    """Only "rate" occurs in training: click/view/... must score like rate, not like noise."""
    from models.export import onnx_scorer

    art = load_artifact(tiny_artifact)
    score = onnx_scorer(art.onnx_path)
    items = np.array([[2, 3, 4]], dtype=np.int64)
    cands = np.array([[2, 5, 6]], dtype=np.int64)
    rate = score(items, np.full_like(items, 5), cands)
    for e in (1, 2, 3, 4):
        np.testing.assert_allclose(score(items, np.full_like(items, e), cands), rate, atol=1e-5)


def test_train_until_recorded(synthetic_log, tmp_path: Path) -> None:
    from models.eventlog import load_event_data

    full = load_event_data([synthetic_log[0]])
    cut = int(np.quantile(full.log.ts, 0.7))
    ds = load_event_data([synthetic_log[0]], train_until_ms=cut)
    cfg = TrainConfig(epochs=1, batch_size=16, n_negatives=8, train_until_ms=cut)
    out = run(ds, tmp_path / "cut" / "v0", MODEL, cfg, "cut", "v0", progress=False)
    assert load_artifact(out).config["trained_on"]["train_until_ms"] == cut
    with pytest.raises(ModelError, match="cut"):  # data cut and training config must agree
        run(full, tmp_path / "cut" / "v1", MODEL, cfg, "cut", "v1", progress=False)


def test_validation_scorer_matches_score(synthetic_dataset) -> None:
    """The fast h @ E.T path used for early stopping ranks exactly like the exported ``score``."""
    from models.export import example_inputs, torch_scorer
    from models.train import full_catalogue_scorer

    split = _split(synthetic_dataset)
    model = _fresh(split).eval()
    items, events, cands = example_inputs(split.n_items, 5, 8, 30)
    np.testing.assert_allclose(full_catalogue_scorer(model)(items, events, cands),
                               torch_scorer(model)(items, events, cands), atol=1e-5)


def test_report_table(tiny_artifact: Path) -> None:
    from models.report import table

    text = table([tiny_artifact])
    assert "**tiny/v0 (L=12)** fp32" in text and "tiny/v0 (L=12) int8" in text and "item-knn" in text


def test_plateau_lr_decay_then_stop(synthetic_dataset, tmp_path: Path) -> None:
    split = _split(synthetic_dataset)
    # lr so small that validation cannot improve: plateau after epoch 1, one decay, then stop.
    cfg = TrainConfig(epochs=20, batch_size=16, lr=1e-9, patience=1, eval_every=1, lr_decays=1, lr_decay_factor=0.25)
    _, state = train(_fresh(split), split, cfg, tmp_path, progress=False)
    assert [h["lr"] for h in state.history] == pytest.approx([1e-9, 1e-9, 2.5e-10])
    assert state.lr_decays == 1 and state.epoch == 3
