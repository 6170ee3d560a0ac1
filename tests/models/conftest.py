"""Fixtures for tests/models: tiny synthetic MovieLens-format files and a tiny trained artifact.

Nothing here downloads ML-1M; every model is trained in seconds in a tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import INTER_HEADER, ITEM_HEADER, Dataset, load_files

N_ITEMS = 150
N_USERS = 60


def write_synthetic(root: Path, n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> tuple[Path, Path]:
    """RecBole-format ``.inter``/``.item`` files with learnable structure.

    Each user walks the item catalogue in steps of 1 from a random start, so
    the next item is predictable from the last one. Rows are written in a
    shuffled order and with shared timestamps to exercise the (timestamp,
    file row) ordering.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    titles = [f"Movie {i} ({1990 + i % 10})" for i in range(n_items)]
    item_path, inter_path = root / "syn.item", root / "syn.inter"
    with item_path.open("w", encoding="utf-8") as fh:
        fh.write("\t".join(ITEM_HEADER) + "\n")
        for i, t in enumerate(titles):
            fh.write(f"{t}\tMovie {i}\t{1990 + i % 10}\tDrama\n")
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 25))
        t0 = 1_000_000 + int(rng.integers(0, 10_000))
        for k in range(length):
            item = titles[(start + k) % n_items]
            rows.append((f"u_{u}", item, int(rng.integers(1, 6)), t0 + 10 * k))
    with inter_path.open("w", encoding="utf-8") as fh:
        fh.write("\t".join(INTER_HEADER) + "\n")
        for user, item, rating, ts in rows:
            fh.write(f"{user}\t{item}\t{rating}\t{ts}\n")
    return inter_path, item_path


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_synthetic(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_files: tuple[Path, Path]) -> Dataset:
    return load_files(*synthetic_files)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Dataset) -> Path:
    """A trained tiny model exported as a full artifact directory (with metrics.json)."""
    from models.evaluate import evaluate_artifact
    from models.train import TrainConfig, run

    out = tmp_path_factory.mktemp("art") / "tiny" / "v0"
    cfg = TrainConfig(epochs=3, batch_size=16, n_negatives=16, lr=5e-3, patience=5, threads=1)
    run(synthetic_dataset, out, {"max_len": 12, "d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.1},
        cfg, "tiny", "v0", progress=False)
    evaluate_artifact(out, dataset=synthetic_dataset, baselines=True, int8=True)
    return out
