"""What a live model swap costs: latency of requests sent while a new version loads vs steady state.

    .venv/bin/python -m bench.model_swap            # ~2 min; writes bench/results/model_swap.{json,md}, .png

One job (the default keyed path and model) under an open-loop load (`bench.hot_path`'s sender and
consumer, same machine); every `--every-s` seconds a version is announced on `model-updates`,
alternating between two published copies (different weights) in a registry under a temporary
directory. A request is "during a swap" if it was sent between an announcement and the first
list scored by the announced version (+ `--margin-s`); every other request after warm-up is
steady state. Also reports, per swap, the time from announcement to the first list by the new
version, and whether any request went unanswered, fell back or came back untagged.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.hot_path import OUT, Answers, Sender, Workload, history_lengths, percentiles
from jobs.config import REPO_ROOT, JobConfig

log = logging.getLogger("bench.model_swap")
VERSIONS = (REPO_ROOT / "models" / "sasrec" / "v3", REPO_ROOT / "models" / "sasrec" / "v2")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=50.0, help="offered load, req/s (well under saturation)")
    p.add_argument("--duration-s", type=float, default=75.0)
    p.add_argument("--every-s", type=float, default=15.0, help="seconds between announcements")
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--margin-s", type=float, default=0.5, help="how long after the switch still counts as a swap")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    args = parse_args(argv)
    from jobs.kafka_io import produce, wait_committed
    from jobs.local_broker import LocalBroker
    from jobs.rerank_job import running
    from models.artifact import load_artifact
    from models.registry import ANNOUNCE_KEY, Registry

    lengths, _ = history_lengths(args.users, args.seed)
    vocab = sorted(load_artifact(VERSIONS[0]).item_to_index)
    work = Workload([f"user-{i}" for i in range(args.users)], lengths, vocab, args.seed)
    run_id = uuid.uuid4().hex[:6]
    topics = {k: f"swap-{k}-{run_id}" for k in ("events", "requests", "ranked", "dead", "control")}
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        registry = Registry(Path(tmp) / "registry")
        published = [registry.publish(v, name="bench", version=f"v{i}") for i, v in enumerate(VERSIONS)]
        broker.create_topics([t for k, t in topics.items() if k != "control"], partitions=2)
        broker.create_topics([topics["control"]], partitions=1)
        cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["events"],
                        requests_topic=topics["requests"], output_topic=topics["ranked"],
                        dead_letter_topic=topics["dead"], model_updates_topic=topics["control"],
                        group_id=f"swap-{run_id}", job_name="bench-model-swap")
        max_len = load_artifact(VERSIONS[0]).max_len
        sender = Sender(broker.bootstrap_servers, topics["events"], topics["requests"], 5)
        announced: list[tuple[float, str]] = []
        with running(cfg):
            ends = sender.prefill(work.prefill(max_len), topics["events"])
            wait_committed(broker.bootstrap_servers, cfg.group_id, topics["events"], ends, 600)
            answers = Answers(broker.bootstrap_servers, topics["ranked"])
            schedule = work.schedule(int(args.rate * args.duration_s), 1, args.candidates, 10, run_id)
            stop = threading.Event()

            def announcer() -> None:
                n = 0
                while not stop.wait(args.every_s if n else args.warmup_s + args.every_s / 2):
                    version = published[(n + 1) % len(published)]
                    announced.append((time.monotonic(), f"{version.name}/{version.version}"))
                    produce(broker.bootstrap_servers, topics["control"],
                            [(ANNOUNCE_KEY.decode(), version.announcement())])
                    log.info("announced %s", announced[-1][1])
                    n += 1

            thread = threading.Thread(target=announcer, daemon=True)
            start = time.monotonic()
            thread.start()
            sent = sender.run(schedule, args.rate)
            stop.set()
            thread.join()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(r in answers.received for r in sent):
                time.sleep(0.05)
            answers.close()
    got = answers.received
    end = max(t for t, _ in sent.values())
    # Per announcement: the first list by the announced version received after it.
    first_after = {}
    for t_ann, version in announced:
        later = [got[r][0] for r in got if got[r][3] == version and got[r][0] >= t_ann]
        first_after[version + f"@{t_ann:.1f}"] = min(later) if later else end
    windows = [(t, first_after[v + f"@{t:.1f}"] + args.margin_s) for t, v in announced]
    during, steady = [], []
    for rid, (t_sent, _) in sent.items():
        if rid not in got or t_sent < start + args.warmup_s:
            continue
        lat = (got[rid][0] - t_sent) * 1000
        (during if any(a <= t_sent <= b for a, b in windows) else steady).append(lat)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"model": "sasrec v3 <-> v2 (L=200)"},
        "sent": len(sent), "answered": sum(r in got for r in sent),
        "fallback": sum(1 for r in sent if r in got and got[r][2]),
        "untagged": sum(1 for r in sent if r in got and not (got[r][3] and got[r][4])),
        "swaps": [{"version": v, "switch_ms": round((first_after[v + f"@{t:.1f}"] - t) * 1000, 1)} for t, v in announced],
        "steady_ms": percentiles(steady), "during_swap_ms": percentiles(during),
        "requests_during_swaps": len(during), "requests_steady": len(steady),
    }
    if steady and during:
        result["p99_ratio_swap_vs_steady"] = round(result["during_swap_ms"]["p99"] / result["steady_ms"]["p99"], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_swap.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ("| requests | count | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n" +
          "".join(f"| {name} | {len(vals)} | {r.get('p50')} | {r.get('p95')} | {r.get('p99')} | {r.get('max')} |\n"
                  for name, vals, r in (("steady state", steady, result["steady_ms"]),
                                        ("during a swap", during, result["during_swap_ms"]))) +
          f"\n{result['answered']}/{result['sent']} answered, {result['fallback']} fallback, "
          f"{result['untagged']} untagged; announcement -> first list by the new version: "
          + ", ".join(f"{s['switch_ms']:.0f} ms" for s in result["swaps"]) + "\n")
    (out / "model_swap.md").write_text(f"Machine: {json.dumps(result['machine'])}\n\nSettings: "
                                       f"{json.dumps(result['settings'])}\n\n{md}")
    _plot(sent, got, announced, start, out / "model_swap.png")
    print(md)
    return result


def _plot(sent: dict, got: dict, announced: list, start: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [(sent[r][0] - start) for r in sent if r in got]
    ys = [(got[r][0] - sent[r][0]) * 1000 for r in sent if r in got]
    colors = [hash(got[r][3]) % 10 for r in sent if r in got]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(xs, ys, c=colors, cmap="tab10", s=4)
    for t, v in announced:
        ax.axvline(t - start, color="grey", linestyle=":")
        ax.text(t - start, max(ys or [1]), v, fontsize=7, rotation=90, va="top")
    ax.set_xlabel("seconds into the run (dotted: announcement)")
    ax.set_ylabel("latency (ms), colour = serving version")
    ax.set_yscale("log")
    ax.set_title("Live model swaps under load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
