from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.artifact import (EVENT_TYPES, OOV_INDEX, encode_events, encode_items, left_pad, load_artifact)
from models.errors import ArtifactError


def test_load_tiny_artifact(tiny_artifact: Path) -> None:
    art = load_artifact(tiny_artifact)
    assert art.onnx_path == tiny_artifact / "model.onnx" and art.onnx_path.is_file()
    assert (art.name, art.version, art.max_len) == ("tiny", "v0", 12)
    assert art.event_to_index == EVENT_TYPES
    assert art.n_items == len(art.item_to_index) + 2
    assert set(art.metrics["syn"]) == {"uniform100", "pop100", "full"}
    first = next(iter(art.item_to_index))
    assert art.encode_items([first, "no-such-item"]).tolist() == [art.item_to_index[first], OOV_INDEX]
    assert art.encode_items([]).dtype == np.int64


def test_helpers() -> None:
    assert encode_items(["7", 3, "x"], {"7": 2, "3": 4}).tolist() == [2, 4, OOV_INDEX]
    assert encode_events(["rate", "click", "??"]).tolist() == [5, 2, 0]
    assert left_pad([[1, 2, 3], [], [4, 5, 6, 7, 8]], 4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 0], [5, 6, 7, 8]]


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "a" / "v"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


@pytest.mark.parametrize("breakage, match", [
    (lambda d: (d / "model.onnx").unlink(), "model.onnx"),
    (lambda d: (d / "vocab.json").unlink(), "vocab.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "invalid JSON"),
    (lambda d: _edit(d / "config.json", lambda c: c.pop("max_len")), "missing keys"),
    (lambda d: _edit(d / "config.json", lambda c: c.update(n_items=c["n_items"] + 1)), "n_items"),
    (lambda d: _edit(d / "config.json", lambda c: c.update(max_len=0)), "max_len"),
    (lambda d: _edit(d / "vocab.json", lambda v: v.update(oov=7)), "pad/oov"),
    (lambda d: _edit(d / "vocab.json", lambda v: v["items"].update({"new": 999})), "item indices"),
    (lambda d: _edit(d / "vocab.json", lambda v: v["events"].update(click=9)), "events"),
])
def test_load_errors(tiny_artifact: Path, tmp_path: Path, breakage, match: str) -> None:
    d = _copy(tiny_artifact, tmp_path)
    breakage(d)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(d)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nope")


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_artifact_module_imports_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys, models.artifact; bad = {'torch', 'onnxruntime', 'onnx'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
