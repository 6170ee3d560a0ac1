"""How soon a new item is rankable by content: `item-catalog` record produced -> its embedding consumed.

    .venv/bin/python -m bench.item_embed_latency                # 50 items, one every 200 ms, 4 runs
    .venv/bin/python -m bench.item_embed_latency --items 200 --interval-ms 50 --skip-unchanged 1 --repeats 1

Starts the local broker on a free loopback port (or uses `--bootstrap-servers`) and the item-
embedding job on the PyFlink minicluster, announces one warm-up item (its time is the job's cold
start: Python worker + encoder load), then `--items` new items one at a time on a fixed schedule
(open loop: the sender never waits for the job), each produced with its own timestamp, while a
consumer reads `item-embeddings`. Latency = consumer receive time - producer timestamp, one clock.
Each run is a fresh job on the same broker; by default the job with and without its
skip-unchanged step, alternating, twice each. Writes results/text/latency.json and latency.md. Texts are synthetic product titles, so nothing
here depends on MovieLens.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from jobs.config import REPO_ROOT, ItemEmbedConfig, load_flink_conf

log = logging.getLogger("bench.item_embed_latency")
OUT = REPO_ROOT / "results" / "text" / "latency.json"
_ADJECTIVES = ("waterproof", "vintage", "compact", "wireless", "organic", "handmade", "foldable", "silent")
_NOUNS = ("hiking boot", "coffee grinder", "desk lamp", "rain jacket", "film camera", "chef knife", "tent")
_CATEGORIES = ("Outdoor", "Kitchen", "Home", "Photo", "Apparel", "Tools")


def new_item(i: int, run: str) -> dict:
    """A synthetic catalog record (deterministic in i)."""
    adjective, noun = _ADJECTIVES[i % len(_ADJECTIVES)], _NOUNS[(i // len(_ADJECTIVES)) % len(_NOUNS)]
    return {"item_id": f"new-{run}-{i}", "title": f"{adjective.title()} {noun} #{i}",
            "text": f"A {adjective} {noun}, new this season.", "categories": [_CATEGORIES[i % len(_CATEGORIES)]]}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


def measure(bootstrap: str, n_items: int, interval_ms: int, encoder_dir: str, timeout_s: float,
            skip_unchanged: int = 1) -> dict:
    """Run the job against `bootstrap` and measure; returns the result dict."""
    from jobs.item_embed_job import create_item_topics, running
    from jobs.kafka_io import Producer, TopicReader

    run = uuid.uuid4().hex[:8]
    cfg = ItemEmbedConfig(bootstrap_servers=bootstrap, catalog_topic=f"item-catalog-{run}",
                          embeddings_topic=f"item-embeddings-{run}", dead_letter_topic=f"dead-letters-{run}",
                          group_id=f"latency-{run}", encoder_dir=encoder_dir, job_name=f"item-embed-latency-{run}",
                          skip_unchanged=skip_unchanged)
    create_item_topics(bootstrap, cfg, partitions=2)
    sent: dict[str, int] = {}
    reader = TopicReader(bootstrap, cfg.embeddings_topic)
    producer = Producer(bootstrap)
    try:
        with running(cfg):
            warm = new_item(-1, run)
            sent[warm["item_id"]] = int(time.time() * 1000)
            producer.send(cfg.catalog_topic, warm["item_id"], warm, timestamp_ms=sent[warm["item_id"]])
            producer.flush()
            reader.read_until(lambda rs: any(r["key"] == warm["item_id"] for r in rs), timeout_s, settle_s=0)
            start = time.monotonic()
            for i in range(n_items):  # open loop: item i leaves at start + i * interval, whatever the job does
                due = start + i * interval_ms / 1000
                while time.monotonic() < due:
                    reader.poll(timeout_ms=max(1, int((due - time.monotonic()) * 1000)))
                item = new_item(i, run)
                sent[item["item_id"]] = int(time.time() * 1000)
                producer.send(cfg.catalog_topic, item["item_id"], item, timestamp_ms=sent[item["item_id"]])
                producer.flush()
            reader.read_until(lambda rs: {r["key"] for r in rs} >= set(sent), timeout_s, settle_s=1.0)
    finally:
        producer.close()
        reader.close()
    received: dict[str, dict] = {}
    for r in reader.records:
        received.setdefault(r["key"], r)
    cold = received.get(warm["item_id"])
    lat = [received[k]["received_at"] - sent[k] for k in sent if k in received and k != warm["item_id"]]
    in_job = [received[k]["value"]["emitted_at"] - sent[k] for k in sent if k in received and k != warm["item_id"]]
    if not lat:
        raise RuntimeError(f"no embedding arrived within {timeout_s}s")
    flink = load_flink_conf(cfg.flink_conf)
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; broker, minicluster and this tool share them",
        "items": n_items, "interval_ms": interval_ms, "arrived": len(lat),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "duplicates": len(reader.records) - len(received),
        "cold_start_ms": None if cold is None else cold["received_at"] - sent[warm["item_id"]],
        "catalog_to_consumed_ms": percentiles(lat),
        "catalog_to_emitted_ms": percentiles(in_job),
        "settings": {k: flink.get(k) for k in ("python.fn-execution.bundle.time", "python.fn-execution.bundle.size",
                                               "execution.buffer-timeout.interval")}
                    | {"fetch_max_wait_ms": cfg.fetch_max_wait_ms, "sink_linger_ms": cfg.sink_linger_ms,
                       "embed_batch_size": cfg.embed_batch_size, "parallelism": cfg.parallelism,
                       "skip_unchanged": cfg.skip_unchanged},
    }


def write(runs: list[dict], command: str, out: Path) -> None:
    """All runs to `out` (JSON) and a table, one row per run, to `out`.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "runs": runs}, indent=2) + "\n")
    lines = [f"`{command}` ({runs[0]['when']}; {runs[0]['machine']})", "",
             "latency = item-catalog record produced -> its embedding consumed from item-embeddings "
             "(emitted: -> written by the job)", "",
             "| run | skip-unchanged | arrived | p50 ms | p95 ms | p99 ms | max ms | emitted p50 / p99 ms | "
             "cold start ms | load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, start=1):
        c, e = r["catalog_to_consumed_ms"], r["catalog_to_emitted_ms"]
        lines.append(f"| {i} | {r['settings']['skip_unchanged']} | {r['arrived']}/{r['items']} | {c['p50']} | "
                     f"{c['p95']} | {c['p99']} | {c['max']} | {e['p50']} / {e['p99']} | {r['cold_start_ms']} | "
                     f"{r['load_average_1m_after']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--bootstrap-servers", default=None, help="an existing Kafka; default: a local broker")
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--skip-unchanged", default="1,0",
                        help="the job's --skip-unchanged values to run, alternating (1: with the keyed step that "
                             "drops unchanged items)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each --skip-unchanged value")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from models.text_encoder import ensure_encoder

    encoder_dir = str(ensure_encoder())
    variants = [int(v) for v in args.skip_unchanged.split(",")]
    runs = []
    with ExitStack() as stack:
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            from jobs.local_broker import LocalBroker

            bootstrap = stack.enter_context(LocalBroker()).bootstrap_servers
        for _ in range(args.repeats):  # alternating, so a change in the machine's load hits both alike
            for skip in variants:
                runs.append(measure(bootstrap, args.items, args.interval_ms, encoder_dir, args.timeout_s, skip))
    command = (f"python -m bench.item_embed_latency --items {args.items} --interval-ms {args.interval_ms} "
               f"--skip-unchanged {args.skip_unchanged} --repeats {args.repeats}")
    write(runs, command, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
