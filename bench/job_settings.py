"""Benchmark: the job's sustained throughput and latency under its main runtime settings.

    .venv/bin/python -m bench.job_settings [--requests 1000]

Each variant is the real job on the local minicluster fed by the stream replay in closed loop
(`--speedup 0`: the next request goes out as soon as fewer than `--max-in-flight` are open), on
the same requests, one after another in this process. Reports requests/s and latency per variant
and as ratios to the baseline (the shipped defaults), and writes bench/results/job_settings.json
and .md. Figures depend on the machine and on what else runs on it: compare ratios within a run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import yaml

from jobs.config import REPO_ROOT, JobConfig
from jobs.replay import parse_args, run

OUT = REPO_ROOT / "bench" / "results"

# name -> (replay/job flags, flink-conf overrides)
VARIANTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "baseline (defaults)": ([], {}),
    "request hold 0 ms": (["--request-hold-ms", "0"], {}),
    "bundle.time 10 ms": ([], {"python.fn-execution.bundle.time": 10}),
    "bundle.size 1000, arrow 1000": ([], {"python.fn-execution.bundle.size": 1000,
                                          "python.fn-execution.arrow.batch.size": 1000}),
    "process mode (state in gRPC worker)": ([], {"python.execution-mode": "process"}),
}


def flink_conf_with(overrides: dict[str, Any], tmp: Path) -> str:
    base = yaml.safe_load(Path(JobConfig().flink_conf).read_text())
    base.update(overrides)
    path = tmp / f"flink-{abs(hash(tuple(sorted(overrides.items()))))}.yaml"
    path.write_text(yaml.safe_dump(base))
    return str(path)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--max-in-flight", type=int, default=200)
    p.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (flags, conf) in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            r = run(parse_args(["--requests", str(args.requests), "--speedup", "0",
                                "--max-in-flight", str(args.max_in_flight), "--bins", "1",
                                "--flink-conf", flink_conf_with(conf, Path(tmp)),
                                "--out", str(Path(tmp) / "replay")] + flags))
            d, lat = r["delivery"], r["latency_ms"]
            rows.append({"variant": name, "requests_per_s": round(d["answered"] / r["run"]["replay_s"], 1),
                         "p50_ms": lat["p50"], "p95_ms": lat["p95"], "p99_ms": lat["p99"],
                         "answered": d["answered"], "sent": d["sent"],
                         "fresh": r["freshness"]["answers_reflecting_all_prior_events"],
                         "ndcg@10": r["arms"]["live"]["ndcg@10"]})
            logging.info("variant %s: %s", name, rows[-1])
    base = rows[0]
    for row in rows:
        row["throughput_vs_baseline"] = round(row["requests_per_s"] / base["requests_per_s"], 2)
        row["p50_vs_baseline"] = round(row["p50_ms"] / base["p50_ms"], 2)
    meta = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "settings": {"requests": args.requests, "max_in_flight": args.max_in_flight, "candidates": 101,
                         "model": "sasrec/cut2001 (L=50)", "parallelism": 1}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "job_settings.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| variant | req/s | x baseline | p50 ms | p95 ms | p99 ms | p50 x baseline | answered | fresh |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['requests_per_s']} | {r['throughput_vs_baseline']} | {r['p50_ms']:.0f} | "
              f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['p50_vs_baseline']} | {r['answered']}/{r['sent']} | "
              f"{r['fresh']} |" for r in rows]
    md = "\n".join(lines)
    (OUT / "job_settings.md").write_text(f"{json.dumps(meta)}\n\n{md}\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
