"""Item embeddings on the offline side: a whole catalog -> one matrix, with the job's code path.

The text of an item is ``udfs.embeddings.item_text`` and the vectors come from
``udfs.embeddings.TextEmbedder``: the same builder and the same ONNX session code as the Flink
job's UDF, so a vector computed here equals the one the job publishes on `item-embeddings`
(tests/integration/test_item_embed_job.py checks it to 1e-5).

    python -m models.item_embeddings                 # ML-1M -> data/item-embeddings/ml-1m/
    python -m models.item_embeddings --bench         # items/s per batch size -> results/text/throughput.json

Output directory: ``embeddings.npy`` (N, D) float32, unit rows, and ``items.json``
(``item_ids`` in row order, ``text_sha256`` per row, ``model``, ``dim``); ``load_item_embeddings``
reads them back. For ML-1M the item id is the external id of models/data.py (1-based row of
``ml-1m.item``) and the text is title (with year) + genres.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from models.data import ItemTable, default_data_dir, fetch_ml1m, read_items
from models.errors import DataError
from udfs.embeddings import CatalogItem, TextEmbedder, item_text, text_sha256

log = logging.getLogger(__name__)
EMBEDDINGS_FILE = "embeddings.npy"
ITEMS_FILE = "items.json"
REPO_ROOT = Path(__file__).resolve().parent.parent


def ml1m_catalog(items: ItemTable) -> list[CatalogItem]:
    """ML-1M's item table as catalog items: title (with its year) + genres, ids as on the Kafka topics."""
    return [CatalogItem(item_id=ext_id, title=str(title), categories=tuple(str(genres).split()))
            for ext_id, title, genres in zip(items.ext_ids, items.titles, items.genres)]


@dataclass(frozen=True)
class ItemEmbeddings:
    """A catalog's vectors: row i of `matrix` (N, D) float32 is item `item_ids[i]`."""

    item_ids: list[str]
    matrix: np.ndarray
    text_sha256: list[str]
    model: str

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}


def embed_catalog(catalog: Sequence[CatalogItem], embedder: TextEmbedder, batch_size: int = 32,
                  chunk: int = 1024, progress: bool = True) -> ItemEmbeddings:
    """Embed every item (tqdm bar over chunks of `chunk` items, each run in batches of `batch_size`)."""
    from tqdm import tqdm

    ids = [c.item_id for c in catalog]
    if len(set(ids)) != len(ids):
        raise DataError("duplicate item ids in the catalog")
    texts = [item_text(c) for c in catalog]
    empty = [i for i, t in zip(ids, texts) if not t]
    if empty:
        raise DataError(f"{len(empty)} items have no text, e.g. {empty[:3]}")
    matrix = np.empty((len(texts), embedder.dim), np.float32)
    with tqdm(total=len(texts), unit="item", disable=not progress) as bar:
        for start in range(0, len(texts), chunk):
            matrix[start:start + chunk] = embedder.embed(texts[start:start + chunk], batch_size)
            bar.update(len(texts[start:start + chunk]))
    return ItemEmbeddings(ids, matrix, [text_sha256(t) for t in texts], embedder.name)


def save_item_embeddings(emb: ItemEmbeddings, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / EMBEDDINGS_FILE, emb.matrix)
    (out_dir / ITEMS_FILE).write_text(json.dumps({"model": emb.model, "dim": int(emb.matrix.shape[1]),
                                                  "item_ids": emb.item_ids, "text_sha256": emb.text_sha256}))
    return out_dir


def load_item_embeddings(out_dir: Path) -> ItemEmbeddings:
    """Read what `save_item_embeddings` wrote; DataError when the two files disagree."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / ITEMS_FILE).read_text())
        matrix = np.load(out_dir / EMBEDDINGS_FILE)
    except (OSError, ValueError) as exc:
        raise DataError(f"{out_dir}: cannot read item embeddings: {exc}") from exc
    if matrix.shape != (len(meta["item_ids"]), meta["dim"]) or matrix.dtype != np.float32:
        raise DataError(f"{out_dir}: matrix {matrix.shape} {matrix.dtype} does not match "
                        f"{len(meta['item_ids'])} items x {meta['dim']} float32")
    return ItemEmbeddings(meta["item_ids"], matrix, meta["text_sha256"], meta["model"])


def throughput(embedder: TextEmbedder, texts: Sequence[str], batch_sizes: Sequence[int],
               repeats: int = 2) -> list[dict]:
    """items/s of `embedder.embed` (tokenization included) per batch size, best of `repeats` runs.

    Both wall-clock items/s and items per CPU-second of this process: on a shared machine the
    wall figure moves with the neighbours' load, the CPU figure much less.
    """
    embedder.embed(list(texts[:64]))  # warm-up: ORT allocates its arena on the first runs
    rows = []
    for batch_size in batch_sizes:
        runs = [_timed(embedder, texts, batch_size) for _ in range(repeats)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        rows.append({"batch_size": batch_size, "items": len(texts), "seconds": round(wall, 3),
                     "items_per_s": round(len(texts) / wall, 1), "cpu_seconds": round(cpu, 3),
                     "items_per_cpu_s": round(len(texts) / cpu, 1)})
        log.info("batch %d: %.1f items/s, %.1f items per CPU-second", batch_size, len(texts) / wall, len(texts) / cpu)
    return rows


def _timed(embedder: TextEmbedder, texts: Sequence[str], batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one embed call."""
    wall, cpu = time.perf_counter(), time.process_time()
    embedder.embed(list(texts), batch_size)
    return time.perf_counter() - wall, time.process_time() - cpu


def _bench(embedder_dir: str, catalog: list[CatalogItem], out: Path, n_items: int, batch_sizes: list[int],
           threads: Sequence[int]) -> dict:
    texts = [item_text(c) for c in catalog[:n_items]]
    tokens = [sum(e.attention_mask) for e in TextEmbedder(embedder_dir).tokenizer.encode_batch(texts)]  # unpadded
    result = {"command": f"python -m models.item_embeddings --bench --bench-items {n_items}",
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
              "texts": "ML-1M title + genres", "tokens_per_text": {"mean": round(float(np.mean(tokens)), 1),
                                                                   "max": int(max(tokens))},
              "load_average_1m_before": round(os.getloadavg()[0], 2), "runs": []}
    for t in threads:
        embedder = TextEmbedder(embedder_dir, threads=t)
        result["runs"].append({"onnx_threads": t, "by_batch_size": throughput(embedder, texts, batch_sizes)})
    # Other work on the machine shows here: the numbers are only comparable at a similar load.
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| ONNX threads | batch size | items/s (wall) | items per CPU-second |", "|---|---|---|---|"]
    lines += [f"| {r['onnx_threads']} | {b['batch_size']} | {b['items_per_s']} | {b['items_per_cpu_s']} |"
              for r in result["runs"] for b in r["by_batch_size"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    from models.text_encoder import ensure_encoder

    parser = argparse.ArgumentParser(description="Embed a whole item catalog (ML-1M) with the job's encoder")
    parser.add_argument("--encoder-dir", default=None, help="default: data/text-encoder/all-MiniLM-L6-v2")
    parser.add_argument("--out-dir", type=Path, default=default_data_dir() / "item-embeddings" / "ml-1m")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--bench", action="store_true", help="measure items/s per batch size instead")
    parser.add_argument("--bench-items", type=int, default=1024)
    parser.add_argument("--bench-out", type=Path, default=REPO_ROOT / "results" / "text" / "throughput.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    encoder_dir = args.encoder_dir or str(ensure_encoder())
    _, item_path = fetch_ml1m()
    catalog = ml1m_catalog(read_items(item_path))
    if args.bench:
        result = _bench(encoder_dir, catalog, args.bench_out, args.bench_items, [1, 8, 32, 64, 128, 256], (1, 2))
        print(args.bench_out.with_suffix(".md").read_text())
        log.info("written %s (%d runs)", args.bench_out, len(result["runs"]))
        return
    start = time.perf_counter()
    emb = embed_catalog(catalog, TextEmbedder(encoder_dir, threads=args.threads), args.batch_size)
    seconds = time.perf_counter() - start
    save_item_embeddings(emb, args.out_dir)
    log.info("%d items embedded in %.1f s (%.0f items/s) -> %s", len(catalog), seconds, len(catalog) / seconds,
             args.out_dir)


if __name__ == "__main__":
    main()
