"""models/warm_start.py: a published artifact read back into torch, and retraining from it on newer data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact
from models.errors import ModelError
from models.eventlog import load_event_data
from models.export import onnx_scorer
from models.train import TrainConfig, run
from models.warm_start import model_from_artifact

MODEL = {"max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0}


@pytest.fixture(scope="module")
def before_and_after(synthetic_log, tmp_path_factory) -> tuple[Path, Path]:
    """A model trained on the first 70 % of a log, then one warm-started from it on all of it."""
    root = tmp_path_factory.mktemp("warm")
    full = load_event_data([synthetic_log[0]])
    cut = int(np.quantile(full.log.ts, 0.7))
    old = run(load_event_data([synthetic_log[0]], train_until_ms=cut), root / "m" / "old", MODEL,
              TrainConfig(epochs=2, batch_size=16, n_negatives=8, train_until_ms=cut), "m", "old", progress=False)
    new = run(full, root / "m" / "new", {**MODEL, "d_model": 32}, TrainConfig(epochs=1, batch_size=16, n_negatives=8),
              "m", "new", progress=False, init_from=old)
    return old, new


def test_artifact_reads_back_exactly(before_and_after):
    old, _ = before_and_after
    model, items, events = model_from_artifact(old)
    assert items == load_artifact(old).item_to_index and events == load_artifact(old).event_to_index
    # model_from_artifact already passed the export's parity gate; check one real history too.
    rng = np.random.default_rng(0)
    hist = rng.integers(2, model.cfg.n_items, size=(3, 8))
    ev = np.full_like(hist, 5)
    cands = rng.integers(2, model.cfg.n_items, size=(3, 20))
    from models.export import torch_scorer

    np.testing.assert_allclose(torch_scorer(model)(hist, ev, cands), onnx_scorer(load_artifact(old).onnx_path)(hist, ev, cands),
                               atol=1e-4)


def test_warm_start_keeps_the_architecture_and_records_it(before_and_after):
    old, new = before_and_after
    config = load_artifact(new).config
    assert config["d_model"] == 16  # the source's, not the requested 32
    assert config["init_from"] == str(old)
    assert load_artifact(new).n_items >= load_artifact(old).n_items


def test_content_aware_or_broken_sources_are_refused(tmp_path, before_and_after):
    old, _ = before_and_after
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in old.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    import json

    config = json.loads((broken / "config.json").read_text())
    config["text"] = {"model": "x", "dim": 4}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="content-aware"):
        model_from_artifact(broken)


def test_rows_follow_the_ids_into_a_new_vocabulary(before_and_after):
    """Before any training, the warm-started model scores known items exactly as the source does,
    whatever rows the new vocabulary gives them."""
    import torch

    from models.export import torch_scorer
    from models.sasrec import SASRec
    from models.warm_start import warm_start

    old, _ = before_and_after
    source, items, events = model_from_artifact(old)
    names = sorted(items, key=items.get)
    shuffled = {name: 2 + i for i, name in enumerate(["brand-new"] + names[::-1])}  # every known row moves
    model = SASRec(type(source.cfg)(**{**source.cfg.to_dict(), "n_items": len(shuffled) + 2}))
    assert warm_start(model, shuffled, events, source, items, events) == len(names)
    model.eval()
    hist_names, cand_names = names[:5], names[5:15]
    ev = np.full((1, 5), 5)
    a = torch_scorer(source)(np.array([[items[n] for n in hist_names]]), ev, np.array([[items[n] for n in cand_names]]))
    b = torch_scorer(model)(np.array([[shuffled[n] for n in hist_names]]), ev,
                            np.array([[shuffled[n] for n in cand_names]]))
    np.testing.assert_allclose(a, b, atol=1e-5)
