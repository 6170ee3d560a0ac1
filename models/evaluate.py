"""Score the test split of an event log with an artifact's ONNX model and write metrics.json.

    python -m models.evaluate --model models/sasrec/v2 --events data/ml-1m-events [--baselines] [--int8] [--check]

The input flags are the trainer's (``models.eventlog``: files or the topic read back).
Protocols (see ``models.protocols``): uniform100, pop100, full; each reports
ndcg@10, hr@10, mrr and the number of users, under the dataset's name (the
artifact's ``trained_on.dataset``). ``--check`` recomputes and fails if the
quality numbers differ from the metrics.json on disk (reproducibility of a
committed artifact). The data cut is read from the artifact's config, so the
split matches what the model was trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.artifact import INT8_MODEL_FILE, METRICS_FILE, ModelArtifact, load_artifact
from models.baselines import fit_item_knn, fit_popularity, item_knn_scorer, popularity_scorer
from models.errors import DataError, ModelError
from models.eventlog import EventData, add_data_args, data_from_args
from models.export import example_inputs, onnx_scorer, quantize_int8
from models.protocols import DEFAULT_SEED, PROTOCOLS, evaluate_protocols, item_popularity, make_task, time_cut_task
from models.split import LEAVE_ONE_OUT, TIME_SPLIT, leave_one_out

log = logging.getLogger("models.evaluate")  # not __name__: it is "__main__" under -m

SIZE_BUDGET_BYTES = 20 * 1024 * 1024
QUALITY_KEYS = ("ndcg@10", "hr@10", "mrr", "users")


def measure_latency(path: Path, n_items: int, max_len: int, shapes: tuple[tuple[int, int], ...] = ((1, 100), (64, 100)),
                    repeats: int = 30) -> dict[str, dict[str, float]]:
    """Median/p90 milliseconds per call on one CPU thread, history length = max_len."""
    score = onnx_scorer(path, threads=1)
    out: dict[str, dict[str, float]] = {}
    for batch, n_cand in shapes:
        inputs = example_inputs(n_items, batch, max_len, n_cand, seed=batch)
        score(*inputs)  # warm-up: first run allocates
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            score(*inputs)
            times.append((time.perf_counter() - t0) * 1e3)
        out[f"B{batch}_L{max_len}_C{n_cand}"] = {"median": round(float(np.median(times)), 3),
                                                  "p90": round(float(np.percentile(times, 90)), 3)}
    return out


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def train_cut_ms(art: ModelArtifact) -> int | None:
    """The artifact's training cut in epoch ms (older artifacts recorded ``train_until`` in seconds)."""
    trained_on = art.config.get("trained_on") or {}
    if trained_on.get("train_until_ms") is not None:
        return int(trained_on["train_until_ms"])
    legacy = trained_on.get("train_until")
    return None if legacy is None else int(legacy) * 1000


def evaluate_artifact(path: Path, data: EventData, baselines: bool = False, int8: bool = False,
                      seed: int = DEFAULT_SEED, write: bool = True) -> dict:
    """Evaluate ``path`` (an artifact directory) on ``data``; merge results into its metrics.json when ``write``.

    ``data`` must carry the artifact's training cut (``data_from_args(args, train_cut_ms(art))``).
    """
    art: ModelArtifact = load_artifact(path)
    if data.description.get("train_until_ms") != train_cut_ms(art):
        raise ModelError(f"{path}: trained with the cut {train_cut_ms(art)}, data cut at "
                         f"{data.description.get('train_until_ms')}: the split would differ")
    key = art.dataset
    split = leave_one_out(data.log, art.item_to_index, art.event_to_index)
    if split.n_items != art.n_items:
        raise ModelError(f"{path}: vocabulary size {art.n_items} does not match the data ({split.n_items})")
    test_split = (art.config.get("trained_on") or {}).get("test_split", LEAVE_ONE_OUT)
    if test_split == TIME_SPLIT:
        if data.after_cut is None:
            raise ModelError(f"{path}: a time-split model needs the events after its cut")
        task, unknown = time_cut_task(split, data.log, data.after_cut, art.item_to_index, art.event_to_index)
        described = (f"time cut at {train_cut_ms(art)} ms: each user's first event after the cut, history = "
                     f"every event before it ({unknown} users whose next item the model never saw left out)")
    else:
        task = make_task(split, "test")
        described = "test (last interaction per user; history = everything before it)"
    popularity = item_popularity(split)
    metrics: dict = dict(art.metrics) if write else {}
    metrics[key] = evaluate_protocols(onnx_scorer(art.onnx_path), task, art.max_len, popularity, seed=seed)
    metrics["protocol"] = {
        "split": described,
        "negatives": "uniform100/pop100: 100 items the user never interacted with, without replacement; "
                     "full: all known items minus the user's history",
        "ties": "count against the true item", "seed": seed, "history_len": art.max_len, "model": "fp32 ONNX",
    }
    if baselines:
        histories = task.histories
        longest = max(len(h) for h in histories)
        metrics["baselines"] = {
            "most_popular": {key: evaluate_protocols(
                popularity_scorer(fit_popularity(histories, split.n_items)), task, longest, popularity, seed=seed)},
            "item_knn": {key: evaluate_protocols(
                item_knn_scorer(fit_item_knn(histories, split.n_items)), task, longest, popularity, seed=seed)},
        }
    if int8:
        metrics.update(_evaluate_int8(art, task, popularity, seed, key))
    metrics["evaluated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if write:
        (Path(path) / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        log.info("wrote %s", Path(path) / METRICS_FILE)
    return metrics


def _evaluate_int8(art: ModelArtifact, task, popularity: np.ndarray, seed: int, key: str) -> dict:
    """Quantize (kept beside model.onnx only if the directory stays under the size budget)."""
    int8_path = art.path / INT8_MODEL_FILE
    with tempfile.TemporaryDirectory() as tmp:
        if not int8_path.is_file():
            candidate = quantize_int8(art.onnx_path, Path(tmp) / INT8_MODEL_FILE)
            if _dir_size(art.path) + candidate.stat().st_size <= SIZE_BUDGET_BYTES:
                shutil.move(str(candidate), str(int8_path))  # tmp may be another filesystem
            else:
                int8_path = candidate
                log.info("int8 model not kept: artifact would exceed %d bytes", SIZE_BUDGET_BYTES)
        quality = evaluate_protocols(onnx_scorer(int8_path), task, art.max_len, popularity, seed=seed)
        latency = {"fp32": measure_latency(art.onnx_path, art.n_items, art.max_len),
                   "int8": measure_latency(int8_path, art.n_items, art.max_len)}
        return {"int8": {key: quality, "file": INT8_MODEL_FILE if int8_path.parent == art.path else None,
                         "size_bytes": int8_path.stat().st_size, "fp32_size_bytes": art.onnx_path.stat().st_size},
                "latency_ms": {**latency, "setup": "onnxruntime CPUExecutionProvider, 1 intra-op thread"}}


def check_reproduces(path: Path, data: EventData) -> list[str]:
    """Differences between the quality numbers on disk and freshly computed ones (empty = reproduces)."""
    art = load_artifact(path)
    key = art.dataset
    on_disk = art.metrics.get(key)
    if not on_disk:
        return [f"{path / METRICS_FILE}: no {key!r} section"]
    fresh = evaluate_artifact(path, data, write=False)[key]
    diffs = []
    for proto in PROTOCOLS:
        for key in QUALITY_KEYS:
            a, b = on_disk.get(proto, {}).get(key), fresh[proto][key]
            if a is None or abs(a - b) > 1e-6:
                diffs.append(f"{proto}.{key}: metrics.json={a} recomputed={b}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    # Our loggers at INFO; third-party (onnx_ir, quantizer on the root logger) only at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("models").setLevel(logging.INFO)
    p = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="artifact directory models/<name>/<version>")
    add_data_args(p, train_until=False)  # the cut is the artifact's
    p.add_argument("--baselines", action="store_true", help="also most-popular and item-kNN")
    p.add_argument("--int8", action="store_true", help="also int8 dynamic quantization: quality and latency")
    p.add_argument("--check", action="store_true", help="only verify metrics.json reproduces; write nothing")
    args = p.parse_args(argv)
    try:
        data = data_from_args(args, train_cut_ms(load_artifact(args.model)))
    except DataError as exc:  # bad input is the user's to fix: one clear line, no traceback
        log.error("%s", exc)
        return 2
    if args.check:
        diffs = check_reproduces(args.model, data)
        for d in diffs:
            log.error("does not reproduce: %s", d)
        if not diffs:
            log.info("%s: metrics.json reproduces", args.model)
        return 1 if diffs else 0
    metrics = evaluate_artifact(args.model, data, baselines=args.baselines, int8=args.int8)
    print(json.dumps({k: metrics[k] for k in metrics if k not in ("protocol",)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
