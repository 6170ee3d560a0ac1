"""ONNX export with a parity gate, int8 dynamic quantization, and an ORT scorer.

Export passes only if ``onnx.checker`` accepts the file and ONNX Runtime
(explicit providers) matches eager PyTorch within ``PARITY_ATOL`` on random
and realistic inputs (OOV items, all-padding histories, varying B/L/C).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.artifact import INPUT_NAMES, OOV_INDEX, OUTPUT_NAME, PAD_INDEX, STATE_OUTPUT
from models.errors import ExportError
from models.protocols import Scorer
from models.sasrec import SASRec

log = logging.getLogger(__name__)

ONNX_OPSET = 18
PARITY_ATOL = 1e-5
CPU_PROVIDERS = ("CPUExecutionProvider",)


def example_inputs(n_items: int, batch: int, length: int, n_cand: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Realistic int64 inputs: left padding of random depth, some OOV, one all-padding row.

    Returns (hist_items (B, L), hist_events (B, L), candidates (B, C)).
    """
    rng = np.random.default_rng(seed)
    items = rng.integers(2, n_items, size=(batch, length), dtype=np.int64)
    events = rng.integers(1, 6, size=(batch, length), dtype=np.int64)
    n_pad = rng.integers(0, length + 1, size=batch)
    n_pad[0] = length  # a brand-new user: nothing but padding
    if batch > 1:
        n_pad[1] = 0  # a full history
    for b, p in enumerate(n_pad):
        items[b, :p] = PAD_INDEX
        events[b, :p] = PAD_INDEX
    oov = (rng.random((batch, length)) < 0.05) & (items != PAD_INDEX)
    items[oov] = OOV_INDEX
    cands = rng.integers(2, n_items, size=(batch, n_cand), dtype=np.int64)
    cands[:, 0] = OOV_INDEX  # an unknown candidate must score without crashing
    return items, events, cands


def export_onnx(model: SASRec, path: Path, opset: int = ONNX_OPSET) -> Path:
    """Export ``model.score_and_state`` to a single self-contained ONNX file with dynamic B, L, C.

    A content-aware model is exported folded (``SASRec.folded``): the graph of an ID-only model.
    """
    import onnx

    model = model.folded() if model.cfg.text_dim else model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(a) for a in example_inputs(model.cfg.n_items, 3, min(8, model.cfg.max_len), 5))
    batch, length, n_cand = torch.export.Dim("B"), torch.export.Dim("L"), torch.export.Dim("C")
    dynamic_shapes = {
        "hist_items": {0: batch, 1: length},
        "hist_events": {0: batch, 1: length},
        "candidates": {0: batch, 1: n_cand},
    }
    with torch.no_grad(), warnings.catch_warnings():
        # B of hist_items and hist_events is one symbol; the exporter warns about the duplicate name.
        warnings.filterwarnings("ignore", message=r".*axis name.*will not be used", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        program = torch.onnx.export(
            model, args, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME, STATE_OUTPUT],
            dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, optimize=True, verbose=False,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    # Weights inside the file: the job loads one file per version, nothing beside it.
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    log.info("exported %s (%.1f MB, opset %d)", path, path.stat().st_size / 1e6, opset)
    return path


def ort_session(path: Path, providers: Sequence[str] = CPU_PROVIDERS, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` with explicit providers (never the implicit default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def onnx_scorer(path: Path, providers: Sequence[str] = CPU_PROVIDERS, threads: int | None = None) -> Scorer:
    """Wrap an ONNX model as a protocol scorer (numpy in, numpy out)."""
    sess = ort_session(path, providers, threads)

    def score(items: np.ndarray, events: np.ndarray, cands: np.ndarray) -> np.ndarray:
        feeds = {"hist_items": items.astype(np.int64), "hist_events": events.astype(np.int64),
                 "candidates": cands.astype(np.int64)}
        return sess.run([OUTPUT_NAME], feeds)[0]  # (B, C) float32

    return score


def torch_scorer(model: SASRec) -> Scorer:
    """Eager PyTorch scorer in eval mode (used for validation during training and for parity)."""

    def score(items: np.ndarray, events: np.ndarray, cands: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model.score(torch.from_numpy(items), torch.from_numpy(events), torch.from_numpy(cands))
        return out.numpy()

    return score


def parity_max_diff(model: SASRec, onnx_path: Path, inputs: Sequence[tuple[np.ndarray, ...]]) -> float:
    """Max |eager - ONNX Runtime| over the given input tuples."""
    model = model.eval()
    ref, got = torch_scorer(model), onnx_scorer(onnx_path)
    worst = 0.0
    for items, events, cands in inputs:
        a, b = ref(items, events, cands), got(items, events, cands)
        if a.shape != b.shape or b.dtype != np.float32:
            raise ExportError(f"ONNX output {b.shape} {b.dtype} != eager {a.shape} float32")
        if not np.isfinite(b).all():
            raise ExportError("ONNX output contains NaN/inf")
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def check_parity(model: SASRec, onnx_path: Path, real_inputs: Sequence[tuple[np.ndarray, ...]] = (),
                 atol: float = PARITY_ATOL) -> float:
    """Raise ExportError unless eager and ONNX agree within ``atol`` on random + given inputs."""
    n, max_len = model.cfg.n_items, model.cfg.max_len
    shapes = [(1, 1, 1), (4, max_len, 101), (7, max(1, max_len // 3), 17), (2, max_len, min(n, 500))]
    inputs = [example_inputs(n, b, l, c, seed=i) for i, (b, l, c) in enumerate(shapes)] + list(real_inputs)
    diff = parity_max_diff(model, onnx_path, inputs)
    if diff > atol:
        raise ExportError(f"ONNX parity failed: max |diff| = {diff:.3g} > {atol}")
    log.info("ONNX parity ok: max |diff| = %.3g", diff)
    return diff


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)
