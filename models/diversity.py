"""NDCG@10 against intra-list diversity for MMR over the item text embeddings (issue 10, part 3).

    python -m models.diversity --model models/sasrec/v3      # -> results/text/diversity.json, .md

For every test user of the leave-one-out split (uniform100 protocol: the true next item among 100
items the user never interacted with, the evaluation's own negatives and seed), the served ONNX
model scores the 101 candidates; MMR (udfs/explain.py) re-ranks them over the candidates' text
embeddings for each λ; reported per λ: NDCG@10 and HR@10 of the true item in the re-ranked top
10, and the mean intra-list diversity (1 - mean pairwise cosine) of that top 10. λ = 1 is the
model's own order. Embeddings come from models/item_embeddings.py (the job's code path); an item
of the model's vocabulary without one would be a zero vector (none is missing for ML-1M).
"""
from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from models.artifact import load_artifact
from models.data import default_data_dir, load_ml1m, write_event_files
from models.evaluate import train_cut_ms
from models.eventlog import load_event_data
from models.split import leave_one_out
from models.export import onnx_scorer
from models.item_embeddings import REPO_ROOT, load_item_embeddings
from models.protocols import DEFAULT_SEED, _pad_batch, make_task, sample_negatives
from udfs.explain import intra_list_diversity, mmr_order

log = logging.getLogger("models.diversity")
LAMBDAS = (1.0, 0.9, 0.8, 0.7, 0.5, 0.3)
K = 10


def index_embeddings(item_to_index: dict[str, int], ids: list[str], matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """(n_items, D) rows by model index (zero rows for pad/OOV and items without text); count of missing items."""
    row_of = {item: r for r, item in enumerate(ids)}
    table = np.zeros((max(item_to_index.values()) + 1, matrix.shape[1]), np.float32)
    missing = 0
    for item, idx in item_to_index.items():
        r = row_of.get(item)
        if r is None:
            missing += 1
        else:
            table[idx] = matrix[r]
    return table, missing


def ndcg_hr_at_k(order: np.ndarray, target_pos: int, k: int = K) -> tuple[float, float]:
    """The list's NDCG@k and HR@k for one relevant item at candidate position `target_pos`."""
    hits = np.flatnonzero(order[:k] == target_pos)
    if hits.size == 0:
        return 0.0, 0.0
    return 1.0 / float(np.log2(hits[0] + 2)), 1.0


def measure(model_dir: Path, embeddings_dir: Path, lambdas: Sequence[float], max_users: int | None,
            seed: int = DEFAULT_SEED) -> dict:
    art = load_artifact(model_dir)
    # Through the generic trainer input (the ML-1M adapter's event file), as models.evaluate reads it.
    events = REPO_ROOT / "results" / "tmp" / "ml-1m-events" / "events.parquet"
    if not events.is_file():
        write_event_files(load_ml1m(), events.parent)
    data = load_event_data([events], train_until_ms=train_cut_ms(art), dataset="ml-1m")
    split = leave_one_out(data.log, art.item_to_index, art.event_to_index)
    task = make_task(split, "test")
    negatives = sample_negatives(task, seed)  # uniform100, as models.evaluate draws them
    emb = load_item_embeddings(embeddings_dir)
    table, missing = index_embeddings(dict(art.item_to_index), emb.item_ids, emb.matrix)
    users = np.arange(len(task.targets)) if max_users is None else np.arange(min(max_users, len(task.targets)))
    score = onnx_scorer(art.onnx_path)
    sums = {lam: np.zeros(3) for lam in lambdas}  # ndcg, hr, ild
    for start in range(0, len(users), 256):
        idx = users[start:start + 256]
        items, events = _pad_batch(task, idx, art.max_len)
        cands = np.concatenate([task.targets[idx, None], negatives[idx]], axis=1)  # (B, 101), target at 0
        scores = np.asarray(score(items, events, cands), np.float64)  # (B, 101)
        for b in range(len(idx)):
            vectors = table[cands[b]]  # (101, D)
            # Target at position 0 among equals would be favoured by ties; shuffle positions like a request would.
            perm = np.random.default_rng(seed + int(idx[b])).permutation(cands.shape[1])
            for lam in lambdas:
                order = perm[mmr_order(scores[b, perm], vectors[perm], K, lam)]
                ndcg, hr = ndcg_hr_at_k(order, 0)
                sums[lam] += (ndcg, hr, intra_list_diversity(vectors[order]))
    n = len(users)
    shown = model_dir.resolve().relative_to(REPO_ROOT) if model_dir.resolve().is_relative_to(REPO_ROOT) else model_dir
    return {
        "command": f"python -m models.diversity --model {shown}" + ("" if max_users is None else f" --users {n}"),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": f"{art.name}/{art.version}", "encoder": emb.model, "protocol": "uniform100 (test split)",
        "users": n, "k": K, "items_without_embedding": missing,
        "by_lambda": [{"lambda": lam, "ndcg@10": round(sums[lam][0] / n, 4), "hr@10": round(sums[lam][1] / n, 4),
                       "ild@10": round(sums[lam][2] / n, 4)} for lam in lambdas],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="NDCG@10 vs intra-list diversity of MMR over text embeddings")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "sasrec" / "v3")
    parser.add_argument("--embeddings", type=Path, default=default_data_dir() / "item-embeddings" / "ml-1m",
                        help="written by `python -m models.item_embeddings`")
    parser.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)))
    parser.add_argument("--users", type=int, default=None, help="the first N test users (default: all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "text" / "diversity.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = measure(args.model, args.embeddings, [float(x) for x in args.lambdas.split(",")], args.users)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`{result['command']}` ({result['when']}): {result['model']}, {result['protocol']}, "
             f"{result['users']} users, encoder {result['encoder']}", "",
             "| λ | NDCG@10 | HR@10 | ILD@10 |", "|---|---|---|---|"]
    lines += [f"| {r['lambda']} | {r['ndcg@10']} | {r['hr@10']} | {r['ild@10']} |" for r in result["by_lambda"]]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
