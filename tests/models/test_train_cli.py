"""End to end through the command lines, on a synthetic log in the contract format (no ML-1M)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from models import evaluate, train
from models.artifact import load_artifact
from models.export import onnx_scorer
from tests.models.conftest import synthetic_events, write_catalog, write_events

TINY = ["--max-len", "8", "--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--epochs", "2",
        "--eval-every", "1", "--batch-size", "16", "--threads", "1", "--no-progress"]


def test_train_and_check_on_a_new_log(tmp_path: Path) -> None:
    # Event names the contract does not have, ids that are not numbers, two files in a directory.
    rows = synthetic_events(n_users=40, events=("page_view", "add_to_cart", "purchase"), seed=4)
    write_events(tmp_path / "log" / "day1.jsonl", rows[: len(rows) // 2])
    write_events(tmp_path / "log" / "day2.jsonl", rows[len(rows) // 2:])
    catalog = write_catalog(tmp_path / "catalog.jsonl")
    out = tmp_path / "shop" / "v1"
    assert train.main(["--events", str(tmp_path / "log"), "--catalog", str(catalog), "--out", str(out),
                       "--dataset-name", "shop", *TINY]) == 0
    for name in ("model.onnx", "vocab.json", "config.json", "metrics.json", "curves.png"):
        assert (out / name).is_file(), name
    art = load_artifact(out)
    assert art.event_to_index["add_to_cart"] == 6 and art.event_to_index["page_view"] == 7
    assert art.config["n_events"] == 8 and art.config["trained_on"]["dataset"] == "shop"
    assert art.titles["sku-7"] == "Item 7"
    for proto in ("uniform100", "pop100", "full"):
        assert 0.0 <= art.metrics["shop"][proto]["ndcg@10"] <= 1.0
        assert art.metrics["shop"][proto]["users"] == 40
    history = art.config["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all("valid" in h for h in history)
    # The custom event types were trained: scoring with them runs and differs from "no event".
    score = onnx_scorer(art.onnx_path)
    items = art.encode_items(["sku-1", "sku-2", "sku-3"])[None, :]
    cands = art.encode_items(["sku-4", "sku-9", "sku-20"])[None, :]
    custom = score(items, art.encode_events(["page_view", "add_to_cart", "purchase"])[None, :], cands)
    padded = score(items, np.zeros_like(items), cands)
    assert np.isfinite(custom).all() and not np.allclose(custom, padded)
    # The committed-artifact check, through the same input flags.
    assert evaluate.main(["--model", str(out), "--events", str(tmp_path / "log"), "--check"]) == 0


def test_bad_input_is_one_clear_error(tmp_path: Path, caplog) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user_id": "u", "item_id": "a", "event": "view", "ts": 0}) + "\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="models.train"):
        assert train.main(["--events", str(bad), "--out", str(tmp_path / "x" / "v1"), *TINY]) == 2
    assert f"{bad}:1:" in caplog.text and "'ts'" in caplog.text and "ts_out_of_range" in caplog.text
    assert not (tmp_path / "x" / "v1").exists()


def test_time_split_train_and_check(tmp_path: Path) -> None:
    rows = synthetic_events(n_users=40, seed=5)
    seen: dict[str, int] = {}
    for r in rows:  # every user active on both sides of the cut: k-th event of every user at k s
        seen[r["user_id"]] = seen.get(r["user_id"], 0) + 1
        r["ts"] = 1_600_000_000_000 + 1000 * seen[r["user_id"]]
    log = write_events(tmp_path / "events.jsonl", rows)
    cut = 1_600_000_000_000 + 4500
    out = tmp_path / "cut" / "v1"
    assert train.main(["--events", str(log), "--out", str(out), "--train-until", str(cut), "--test-split", "time",
                       *TINY]) == 0
    art = load_artifact(out)
    assert art.config["trained_on"]["test_split"] == "time" and art.config["trained_on"]["train_until_ms"] == cut
    assert "first event after the cut" in art.metrics["protocol"]["split"]
    users = art.metrics["events"]["full"]["users"]
    assert 0 < users < 40  # only users with history before the cut and a known item after it
    assert evaluate.main(["--model", str(out), "--events", str(log), "--check"]) == 0
    assert train.main(["--events", str(log), "--out", str(tmp_path / "x"), "--test-split", "time", *TINY]) == 2
