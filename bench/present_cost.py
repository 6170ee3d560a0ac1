"""What content costs per ranked list: the model call, new-item scores, reasons and MMR, side by side.

    .venv/bin/python -m bench.present_cost                 # v3 (ID-only) vs v4 (content-aware), 2,000 lists each
    .venv/bin/python -m bench.present_cost --lists 500 --candidates 200 --k 20

Times, in one process and one run, what the scoring operator does per request after parsing
(`udfs.rerank.RerankFunction._answer`): `OnnxScorer.score_request` (one ONNX Runtime call) and
`udfs.content.present` (new items scored from their text, the shown order, a reason per shown item),
for each variant below on the same requests, interleaved per request in a random order, so drift in the machine's
load hits every variant alike. The requests are synthetic: histories of `--history` known items,
`--candidates` candidates of which `--new-share` are outside the vocabulary, an embedding table
holding a random unit vector for every item (cost does not depend on the vectors' values), so
nothing depends on a dataset. Writes bench/results/present_cost.{json,md}.
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
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from jobs.config import REPO_ROOT

log = logging.getLogger("bench.present_cost")
OUT = REPO_ROOT / "bench" / "results" / "present_cost.json"


@dataclass(frozen=True)
class Variant:
    name: str
    model: str      # model directory
    present: bool   # call udfs.content.present after the model
    explain: bool = False
    diversity_lambda: float = 1.0


def variants(v3: str, v4: str) -> list[Variant]:
    return [
        Variant("v3: model + top-k (the path before content)", v3, present=False),
        Variant("v3: + present, no reasons", v3, present=True),
        Variant("v3: + reasons", v3, present=True, explain=True),
        Variant("v4: model + top-k", v4, present=False),
        Variant("v4: + new items by content, reasons (default)", v4, present=True, explain=True),
        Variant("v4: + MMR lambda 0.9", v4, present=True, explain=True, diversity_lambda=0.9),
    ]


def make_requests(vocab: Sequence[str], n: int, history: int, candidates: int, new_share: float, seed: int
                  ) -> list[tuple[list[str], list[str]]]:
    """(history items, candidates) per request; `new_share` of the candidates are unknown ids."""
    rng = np.random.default_rng(seed)
    n_new = int(round(new_share * candidates))
    out = []
    for r in range(n):
        hist = [vocab[i] for i in rng.integers(0, len(vocab), history)]
        known = [vocab[i] for i in rng.choice(len(vocab), candidates - n_new, replace=False)]
        out.append((hist, known + [f"new-{r}-{j}" for j in range(n_new)]))
    return out


def _table(ids: Sequence[str], model: str, dim: int, seed: int):
    from udfs.embeddings import EmbeddingTable, embedding_record

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = EmbeddingTable(model, dim)
    for item_id, v in zip(ids, vectors):
        table.update(embedding_record(item_id, model, v, "0" * 64, 0, 0))
    return table


def percentiles_us(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1e6
    return {"mean": round(float(a.mean()), 1), "p50": round(float(np.percentile(a, 50)), 1),
            "p99": round(float(np.percentile(a, 99)), 1)}


def run(v3: str, v4: str, n_lists: int, history: int, candidates: int, k: int, new_share: float,
        seed: int) -> dict:
    from models.artifact import load_artifact
    from udfs.content import PresentSettings, present
    from udfs.scoring import OnnxScorer

    vs = variants(v3, v4)
    scorers = {d: OnnxScorer(d, ["CPUExecutionProvider"], 1) for d in {v.model for v in vs}}
    content = scorers[v4].projection
    if content is None:
        raise SystemExit(f"{v4} is not a content-aware model")
    vocab = sorted(load_artifact(v4).item_to_index)
    reqs = make_requests(vocab, n_lists, history, candidates, new_share, seed)
    every_id = sorted({i for h, c in reqs for i in h + c})
    table = _table(every_id, content.encoder, content.text_dim, seed)

    def call(v: Variant) -> Callable[[list[str], list[str]], object]:
        scorer = scorers[v.model]
        settings = PresentSettings(explain=v.explain, diversity_lambda=v.diversity_lambda)
        events = ["rate"] * history

        def one(hist: list[str], cands: list[str]) -> object:
            scores, is_oov, state = scorer.score_request(hist, events, cands)
            if not v.present:
                return np.argsort(-scores, kind="stable")[:k]
            return present(cands, scores, is_oov, state, scorer.projection, table, hist, k, settings)
        return one

    fns = [call(v) for v in vs]
    for f in fns:  # warm-up: ORT's first runs allocate
        for h, c in reqs[:20]:
            f(h, c)
    times: list[list[float]] = [[] for _ in vs]
    order_rng = np.random.default_rng(seed + 1)
    for h, c in tqdm(reqs, desc="lists", unit="req"):
        # Every variant on each request, in a fresh random order: the same moment of the machine
        # for all, and no variant always runs first (cold caches) or right after a given one.
        for i in order_rng.permutation(len(fns)):
            t = time.perf_counter()
            fns[i](h, c)
            times[i].append(time.perf_counter() - t)
    base = np.mean(times[0])
    rows = [{"variant": v.name, "model": v.model, **percentiles_us(t), "ratio_vs_first": round(float(np.mean(t) / base), 3)}
            for v, t in zip(vs, times)]
    return {
        "rows": rows,
        "settings": {"lists": n_lists, "history": history, "candidates": candidates, "k": k, "new_share": new_share,
                     "seed": seed, "table_items": len(table), "onnx_threads": 1,
                     "provider": "CPUExecutionProvider"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_1m_end": round(os.getloadavg()[0], 2)},
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"Per list, µs ({s['lists']} lists, history {s['history']}, {s['candidates']} candidates "
             f"({s['new_share']:.0%} new), k={s['k']}, 1 ORT thread; load avg at end "
             f"{result['machine']['loadavg_1m_end']})", "",
             "| variant | mean µs | p50 µs | p99 µs | × first row |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['mean']} | {r['p50']} | {r['p99']} | {r['ratio_vs_first']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m bench.present_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--v3", default=str(REPO_ROOT / "models" / "sasrec" / "v3"), help="an ID-only model")
    p.add_argument("--v4", default=str(REPO_ROOT / "models" / "sasrec" / "v4"), help="a content-aware model")
    p.add_argument("--lists", type=int, default=2000)
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--new-share", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    result = run(args.v3, args.v4, args.lists, args.history, args.candidates, args.k, args.new_share, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
