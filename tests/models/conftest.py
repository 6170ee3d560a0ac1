"""Fixtures for tests/models: tiny synthetic event logs (the `user-events` contract, and RecBole
files for the ML-1M adapter) and a tiny trained artifact.

Nothing here downloads ML-1M; every model is trained in seconds in a tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import INTER_HEADER, ITEM_HEADER
from models.eventlog import EventData, iter_jsonl, load_event_data

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


def synthetic_events(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0,
                     events: tuple[str, ...] = ("rate",)) -> list[dict]:
    """Contract rows with learnable structure, in a shuffled order, some timestamps shared.

    Each user walks the item catalogue (ids ``sku-<n>``) in steps of 1 from a random start; the
    event name of a step is drawn from ``events``; ``ts`` is epoch ms.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 25))
        t0 = 1_600_000_000_000 + int(rng.integers(0, 10_000)) * 1000
        for k in range(length):
            rows.append({"user_id": f"u_{u}", "item_id": f"sku-{(start + k) % n_items}",
                         "event": events[int(rng.integers(len(events)))], "ts": t0 + 1000 * (k // 2),
                         "value": float(rng.integers(1, 6))})
    order = rng.permutation(len(rows))
    # Shuffle users' rows among each other but keep each user's own rows in order: rows sharing a
    # ts are then ordered by input position, which is what the reader promises.
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    owners = [rows[i]["user_id"] for i in order]
    return [by_user[o].pop(0) for o in owners]


def write_events(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(iter_jsonl(rows)), encoding="utf-8")
    return path


def write_catalog(path: Path, n_items: int = N_ITEMS) -> Path:
    rows = [{"item_id": f"sku-{i}", "title": f"Item {i}", "categories": ["a" if i % 2 else "b"]} for i in range(n_items)]
    return write_events(path, rows)


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """RecBole-format files, the ML-1M adapter's input."""
    return write_synthetic(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="session")
def synthetic_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(events.jsonl, catalog.jsonl) in the contract format."""
    root = tmp_path_factory.mktemp("log")
    return write_events(root / "events.jsonl", synthetic_events()), write_catalog(root / "catalog.jsonl")


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_log: tuple[Path, Path]) -> EventData:
    events, catalog = synthetic_log
    return load_event_data([events], [catalog], dataset="syn")


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Dataset) -> Path:
    """A trained tiny model exported as a full artifact directory (with metrics.json)."""
    from models.evaluate import evaluate_artifact
    from models.train import TrainConfig, run

    out = tmp_path_factory.mktemp("art") / "tiny" / "v0"
    cfg = TrainConfig(epochs=3, batch_size=16, n_negatives=16, lr=5e-3, patience=5, threads=1)
    run(synthetic_dataset, out, {"max_len": 12, "d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.1},
        cfg, "tiny", "v0", progress=False)
    evaluate_artifact(out, synthetic_dataset, baselines=True, int8=True)
    return out
