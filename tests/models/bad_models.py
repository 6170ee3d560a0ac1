"""Broken copies of a real model artifact, one per way a version can be bad (registry and swap tests)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

BAD_KINDS = ("truncated_onnx", "wrong_inputs", "vocab_mismatch", "nan_weights", "missing_vocab")


def copy_artifact(src: str | Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "MANIFEST.json", "*.int8.onnx"))
    return dst


def make_bad(src: str | Path, dst: Path, kind: str) -> Path:
    """A copy of `src` broken in one way; config name/version stay those of `src`."""
    import onnx
    from onnx import numpy_helper

    path = copy_artifact(src, dst)
    model_file = path / "model.onnx"
    if kind == "truncated_onnx":
        data = model_file.read_bytes()
        model_file.write_bytes(data[: len(data) // 2])
    elif kind == "wrong_inputs":
        model = onnx.load(str(model_file))
        model.graph.input[0].name = "history"  # rename the input and every use of it
        for node in model.graph.node:
            node.input[:] = ["history" if i == "hist_items" else i for i in node.input]
        onnx.save(model, str(model_file))
    elif kind == "vocab_mismatch":
        # More items than the model's embedding rows: only scoring the extra indices can tell.
        vocab = json.loads((path / "vocab.json").read_text())
        n = len(vocab["items"])
        for j in range(50):
            vocab["items"][f"extra-{j}"] = n + 2 + j
        (path / "vocab.json").write_text(json.dumps(vocab))
        config = json.loads((path / "config.json").read_text())
        config["n_items"] = len(vocab["items"]) + 2
        (path / "config.json").write_text(json.dumps(config))
    elif kind == "nan_weights":
        model = onnx.load(str(model_file))
        biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        values = numpy_helper.to_array(biggest).copy()
        values[...] = np.nan
        biggest.CopyFrom(numpy_helper.from_array(values, biggest.name))
        onnx.save(model, str(model_file))
    elif kind == "missing_vocab":
        (path / "vocab.json").unlink()
    else:
        raise ValueError(kind)
    return path
