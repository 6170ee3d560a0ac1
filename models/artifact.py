"""The versioned model artifact the Flink job loads: ``models/<name>/<version>/``.

Contract (fixed; the job depends on it):

* ``model.onnx``  — inputs ``hist_items`` (B, L) int64, ``hist_events`` (B, L)
  int64, ``candidates`` (B, C) int64; output ``scores`` (B, C) float32, and
  (models since the content-aware change) ``user_state`` (B, D) float32, the
  state the scores are dot products with. History is left-padded with 0, most
  recent item last.
* ``text_projection.npz`` — content-aware models only: ``weight`` (D, T) and
  ``bias`` (D,) float32; an item outside the vocabulary with a text embedding
  ``t`` (T,) scores ``user_state @ (weight @ t + bias)``. ``config["text"]``
  names the encoder (``model``) and ``dim`` = T.
* ``vocab.json``  — ``{"pad": 0, "oov": 1, "items": {ext_id: index}, "titles":
  {ext_id: title}, "events": {name: index}}``; item index 0 = padding,
  1 = out-of-vocabulary, 2.. = known items; event index 0 = padding, the
  contract's names at ``EVENT_TYPES`` (1..5), other names of the training
  data from 6 (``models.split``); ``config["n_events"]`` = len(events) + 1.
* ``config.json`` — model config plus ``name``, ``version``, ``max_len``,
  ``n_items``, ``onnx_opset``, ``trained_on`` (``dataset`` names the data: the
  key of the quality numbers in ``metrics.json``), ``created_at``.
* ``metrics.json`` — offline evaluation (written by ``models.evaluate``).

This module is imported by PyFlink workers, so it depends on numpy and json
only (no torch, no onnxruntime) and does nothing at import time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ArtifactError

PAD_INDEX = 0
OOV_INDEX = 1
FIRST_ITEM_INDEX = 2
EVENT_TYPES: dict[str, int] = {"view": 1, "click": 2, "cart": 3, "purchase": 4, "rate": 5}
INPUT_NAMES = ("hist_items", "hist_events", "candidates")
OUTPUT_NAME = "scores"
STATE_OUTPUT = "user_state"
TEXT_PROJECTION_FILE = "text_projection.npz"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
DEFAULT_DATASET = "events"  # metrics key of an artifact whose trained_on names no dataset
REQUIRED_CONFIG_KEYS = ("name", "version", "max_len", "n_items", "onnx_opset", "trained_on", "created_at")


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, validated artifact directory (paths and vocabularies; no session)."""

    path: Path
    name: str
    version: str
    max_len: int
    n_items: int
    item_to_index: Mapping[str, int]
    event_to_index: Mapping[str, int]
    titles: Mapping[str, str]
    config: Mapping[str, Any]
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        """Name of the data it was trained on: the key of its quality numbers in metrics.json."""
        return str((self.config.get("trained_on") or {}).get("dataset") or DEFAULT_DATASET)

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def int8_onnx_path(self) -> Path | None:
        p = self.path / INT8_MODEL_FILE
        return p if p.is_file() else None

    def encode_items(self, ids: Sequence[str]) -> np.ndarray:
        """External item ids -> int64 indices; unknown ids map to OOV (1)."""
        return encode_items(ids, self.item_to_index)

    def encode_events(self, names: Sequence[str]) -> np.ndarray:
        """Event type names -> int64 indices; unknown names map to padding (0)."""
        return encode_events(names, self.event_to_index)


def encode_items(ids: Sequence[str], item_to_index: Mapping[str, int]) -> np.ndarray:
    """Map external item ids to model indices; unknown ids become OOV_INDEX.

    Returns ``(len(ids),)`` int64.
    """
    get = item_to_index.get
    return np.fromiter((get(str(i), OOV_INDEX) for i in ids), dtype=np.int64, count=len(ids))


def encode_events(names: Sequence[str], event_to_index: Mapping[str, int] = EVENT_TYPES) -> np.ndarray:
    """Map event type names to indices; unknown names become padding (0) so they carry no signal."""
    get = event_to_index.get
    return np.fromiter((get(str(n), PAD_INDEX) for n in names), dtype=np.int64, count=len(names))


def left_pad(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """Left-pad (and left-truncate) index rows to ``length``: ``(len(rows), length)`` int64.

    The most recent item stays last, which is what the model expects.
    """
    out = np.zeros((len(rows), length), dtype=np.int64)
    for r, row in enumerate(rows):
        tail = list(row)[-length:] if length > 0 else []
        if tail:
            out[r, length - len(tail):] = tail
    return out


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(f"artifact file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: invalid JSON ({exc})") from exc


def _check_vocab(vocab: Any, path: Path) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    if not isinstance(vocab, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    for key in ("pad", "oov", "items", "events"):
        if key not in vocab:
            raise ArtifactError(f"{path}: missing key {key!r}")
    if vocab["pad"] != PAD_INDEX or vocab["oov"] != OOV_INDEX:
        raise ArtifactError(f"{path}: pad/oov must be {PAD_INDEX}/{OOV_INDEX}, got {vocab['pad']}/{vocab['oov']}")
    items = vocab["items"]
    if not isinstance(items, dict) or not items:
        raise ArtifactError(f"{path}: 'items' must be a non-empty object")
    indices = sorted(items.values())
    if not all(isinstance(i, int) for i in indices) or indices != list(
        range(FIRST_ITEM_INDEX, FIRST_ITEM_INDEX + len(items))
    ):
        raise ArtifactError(f"{path}: item indices must be exactly {FIRST_ITEM_INDEX}..{FIRST_ITEM_INDEX + len(items) - 1}")
    events = vocab["events"]
    # The contract's names keep their indices (older artifacts have only those); other names follow.
    if (not isinstance(events, dict) or any(events.get(k) != v for k, v in EVENT_TYPES.items())
            or sorted(events.values()) != list(range(1, len(events) + 1))):
        raise ArtifactError(f"{path}: 'events' must map {EVENT_TYPES} and any other names to 6.., "
                            f"indices 1..n without gaps, got {events}")
    titles = vocab.get("titles", {})
    if not isinstance(titles, dict):
        raise ArtifactError(f"{path}: 'titles' must be an object")
    return dict(items), dict(events), dict(titles)


def load_artifact(path: str | Path) -> ModelArtifact:
    """Load and validate ``models/<name>/<version>/``; raise ArtifactError on any inconsistency."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"artifact directory not found: {root}")
    if not (root / MODEL_FILE).is_file():
        raise ArtifactError(f"artifact file missing: {root / MODEL_FILE}")
    items, events, titles = _check_vocab(_read_json(root / VOCAB_FILE), root / VOCAB_FILE)
    config = _read_json(root / CONFIG_FILE)
    if not isinstance(config, dict):
        raise ArtifactError(f"{root / CONFIG_FILE}: expected a JSON object")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise ArtifactError(f"{root / CONFIG_FILE}: missing keys {missing}")
    n_items = config["n_items"]
    if n_items != len(items) + FIRST_ITEM_INDEX:
        raise ArtifactError(
            f"{root / CONFIG_FILE}: n_items={n_items} but vocab has {len(items)} items (+{FIRST_ITEM_INDEX} reserved)"
        )
    if config.get("n_events", len(events) + 1) != len(events) + 1:
        raise ArtifactError(f"{root / CONFIG_FILE}: n_events={config['n_events']} but vocab has {len(events)} events (+1 pad)")
    max_len = config["max_len"]
    if not isinstance(max_len, int) or max_len < 1:
        raise ArtifactError(f"{root / CONFIG_FILE}: max_len must be a positive int, got {max_len!r}")
    metrics_path = root / METRICS_FILE
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    return ModelArtifact(
        path=root,
        name=str(config["name"]),
        version=str(config["version"]),
        max_len=max_len,
        n_items=n_items,
        item_to_index=items,
        event_to_index=events,
        titles=titles,
        config=config,
        metrics=metrics,
    )
