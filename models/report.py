"""Markdown results table from artifacts' metrics.json (for models/README.md).

    python -m models.report models/sasrec/v2 models/sasrec/v1
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from models.artifact import load_artifact

PROTOCOLS = ("uniform100", "pop100", "full")
# Published ML-1M leave-one-out NDCG@10 the issue asks us to compare with (not re-run here).
ANCHORS = (
    ("SASRec (paper, uniform100)", {"uniform100": 0.5905}),
    ("BERT4Rec (paper)", {"uniform100": 0.6008, "pop100": 0.4751}),
    ("eSASRec (full)", {"full": 0.1772}),
    ("FuXi-α (full)", {"full": 0.1813}),
    ("targets (issue 3)", {"uniform100": 0.61, "pop100": 0.48, "full": 0.18}),
)


def _cells(block: dict) -> list[str]:
    out = []
    for proto in PROTOCOLS:
        m = block.get(proto)
        out.append(f"{m['ndcg@10']:.4f} / {m['hr@10']:.4f} / {m['mrr']:.4f}" if m else "—")
    return out


def table(paths: Iterable[Path]) -> str:
    """One row per model (+ its int8 variant and baselines), then the published anchors."""
    lines = ["| model | uniform100 NDCG@10 / HR@10 / MRR | pop100 | full |", "|---|---|---|---|"]
    baselines: dict[str, dict] = {}
    for path in paths:
        art = load_artifact(path)
        m, tag, key = art.metrics, f"{art.name}/{art.version} (L={art.max_len})", art.dataset
        lines.append(f"| **{tag}** fp32 | " + " | ".join(_cells(m.get(key, {}))) + " |")
        if "int8" in m:
            lines.append(f"| {tag} int8 | " + " | ".join(_cells(m["int8"][key])) + " |")
        for name, b in m.get("baselines", {}).items():
            baselines.setdefault(name, b[key])
    for name, block in baselines.items():
        lines.append(f"| {name.replace('_', '-')} | " + " | ".join(_cells(block)) + " |")
    for name, vals in ANCHORS:
        lines.append(f"| {name} | " + " | ".join(f"{vals[p]:.4f}" if p in vals else "—" for p in PROTOCOLS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.report", description=__doc__)
    p.add_argument("models", type=Path, nargs="+")
    print(table(p.parse_args(argv).models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
