"""Warm start: a published artifact's weights back into a trainable SASRec, item rows mapped by id.

Retraining on newer data (the feedback loop: serve -> feedback -> retrain -> publish -> swap)
should not start from random weights: a few minutes of fine-tuning from the serving model beats
hours from scratch. Artifacts ship ONNX, not checkpoints, so the weights are read back from
model.onnx:

- named initializers (embeddings, layer norms, biases) by name;
- the Linear weights, which the exporter stores transposed under generated names, in the order
  the graph's MatMul nodes use them (the order of the model's forward pass), shape-checked;
- then the rebuilt model must reproduce the ONNX scores (the export's own parity gate), or the
  warm start is refused: a wrong mapping never trains silently.

The new vocabulary (built from the new data) keeps the rows of items the old one knew; new items
start from the usual initialisation. Content-aware artifacts fold the text projection into the
exported item table, so they cannot be read back: retrain those from their checkpoints.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from models.artifact import load_artifact
from models.errors import ExportError, ModelError
from models.export import check_parity
from models.sasrec import SASRec, SASRecConfig

log = logging.getLogger(__name__)
ARCHITECTURE_KEYS = ("max_len", "d_model", "n_heads", "n_layers", "d_ff", "dropout")


def architecture(model_dir: str | Path) -> dict:
    """The architecture settings of a published artifact (what a warm-started model must reuse)."""
    config = load_artifact(model_dir).config
    return {k: config[k] for k in ARCHITECTURE_KEYS}


def _onnx_weights(onnx_path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(named initializers, the MatMul weight initializers in graph order, the Gather tables)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    matmuls, tables = [], []
    seen = set()
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            name = node.input[1]
            if name not in seen and inits[name].ndim == 2:
                seen.add(name)
                matmuls.append(inits[name])
        elif node.op_type in ("Gather", "GatherND") and node.input[0] in inits and inits[node.input[0]].ndim == 2:
            tables.append(inits[node.input[0]])
    return inits, matmuls, tables


def model_from_artifact(model_dir: str | Path) -> tuple[SASRec, dict[str, int], dict[str, int]]:
    """The artifact's model as a trainable SASRec (eval mode), its item -> row and event -> row vocabularies.

    Raises ModelError when the artifact cannot be read back exactly (content-aware, or an export
    layout this reader does not know).
    """
    artifact = load_artifact(model_dir)
    config = artifact.config
    if config.get("text"):
        raise ModelError(f"{model_dir} is content-aware: its text projection is folded into the exported item "
                         "table; warm-start it from its training checkpoints instead")
    cfg = SASRecConfig(n_items=int(config["n_items"]), n_events=int(config["n_events"]),
                       **{k: config[k] for k in ARCHITECTURE_KEYS})
    model = SASRec(cfg)
    named, matmuls, tables = _onnx_weights(artifact.onnx_path)
    state = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in named and tuple(named[key].shape) == tuple(value.shape):
            loaded[key] = torch.from_numpy(np.array(named[key], dtype=np.float32))
    # An embedding the exporter renamed (the item table, used twice): the table a Gather reads.
    embeddings = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
    for key in sorted(embeddings - set(loaded)):
        fits = [t for t in tables if tuple(t.shape) == tuple(state[key].shape)]
        if fits:
            loaded[key] = torch.from_numpy(np.array(fits[0], dtype=np.float32))
    # Linear weights, (out, in) in torch, stored (in, out) by the exporter, in forward order.
    linear = [k for k in state if k.endswith(".weight") and k not in loaded and k not in embeddings
              and state[k].ndim == 2]
    if len(linear) != len(matmuls):
        raise ModelError(f"{model_dir}: {len(linear)} linear weights to restore but {len(matmuls)} in the graph")
    for key, weight in zip(linear, matmuls):
        if tuple(weight.T.shape) != tuple(state[key].shape):
            raise ModelError(f"{model_dir}: graph weight {weight.shape} does not fit {key} {tuple(state[key].shape)}")
        loaded[key] = torch.from_numpy(np.ascontiguousarray(weight.T, dtype=np.float32))
    missing = [k for k in state if k not in loaded]
    if missing:
        raise ModelError(f"{model_dir}: no weights in model.onnx for {missing}")
    model.load_state_dict(loaded)
    model.eval()
    try:
        check_parity(model, artifact.onnx_path)
    except ExportError as exc:
        raise ModelError(f"{model_dir}: the weights read back do not reproduce model.onnx ({exc})") from exc
    return model, dict(artifact.item_to_index), dict(artifact.event_to_index)


@torch.no_grad()
def _rows(target: torch.Tensor, source: torch.Tensor, index: Mapping[str, int], source_index: Mapping[str, int]) -> int:
    """target[index[x]] = source[source_index[x]] for every name x both know; how many."""
    pairs = [(row, source_index[name]) for name, row in index.items() if name in source_index]
    if pairs:
        new, old = (torch.tensor(p) for p in zip(*pairs))
        target[new] = source[old]
    return len(pairs)


@torch.no_grad()
def warm_start(model: SASRec, item_to_index: Mapping[str, int], event_to_index: Mapping[str, int], source: SASRec,
               source_items: Mapping[str, int], source_events: Mapping[str, int]) -> int:
    """Copy `source`'s weights into `model` (same architecture, any vocabulary); item and event
    rows by name. Returns how many of the new vocabulary's items kept their old row."""
    if any(getattr(model.cfg, k) != getattr(source.cfg, k) for k in ARCHITECTURE_KEYS):
        raise ModelError(f"warm start needs the same architecture: {model.cfg} vs {source.cfg}")
    target = model.state_dict()
    for key, value in source.state_dict().items():
        if key in ("item_emb.weight", "event_emb.weight"):
            continue
        if value.shape != target[key].shape:
            raise ModelError(f"warm start: {key} is {tuple(value.shape)} in the source, {tuple(target[key].shape)} here")
        target[key] = value.clone()
    kept = _rows(target["item_emb.weight"], source.item_emb.weight, item_to_index, source_items)
    _rows(target["event_emb.weight"], source.event_emb.weight, event_to_index, source_events)
    model.load_state_dict(target)
    log.info("warm start: %d of %d items keep their trained row; %d new", kept, len(item_to_index),
             len(item_to_index) - kept)
    return kept
