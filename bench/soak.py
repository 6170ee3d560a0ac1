"""Soak: the job at a steady load for N minutes; do memory, state and lag stay flat, does TTL evict?

    make soak                                        # = .venv/bin/python -m bench.soak --minutes 30
    .venv/bin/python -m bench.soak --minutes 4 --state-ttl-ms 60000 --out results/tmp/soak

The job runs on the local minicluster against the local broker, fed open-loop at `--rate`
requests/s (each after `--events-per-request` events of its user) by bench/hot_path.py's `Sender`
and `Workload`. Users come in two cohorts: for the first `--quiet-after` part of the run requests
come from the large cohort (`--users`), then only from a small one (`--active-users`): the large
cohort goes quiet, and its state must be evicted `--state-ttl-ms` later (state size falls) while
the load stays the same. Every `--sample-s` seconds, and at the end, it records:

- RSS of the Flink JVM (the minicluster: JobManager + TaskManager, thread-mode Python inside it) and
  of separate Python workers (none in thread mode; the pandas path's process-mode workers);
- state size: the latest completed checkpoint's size from Flink's REST API;
- consumer lag: records produced to the input topics (from delivery reports) minus the offsets the
  job's group has committed (committed on checkpoints, so it includes up to one interval);
- answered requests and request -> ranked list latency of the window.

Writes `<out>/soak.json`, `soak.md` and `soak.png` (default out: bench/results).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.hot_path import Answers, Sender, Workload, _flink_conf, percentiles, rss_mb
from jobs.config import REPO_ROOT, JobConfig

log = logging.getLogger("bench.soak")
OUT = REPO_ROOT / "bench" / "results"


class CountingSender(Sender):
    """hot_path's open-loop Sender that also counts what the broker acknowledged, per partition:
    the produced end offsets that consumer lag is measured against (the broker's own high
    watermark is not trusted: Tansu's is wrong for batches)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ends: dict[tuple[str, int], int] = {}
        self.failed = 0
        self._lock = threading.Lock()

    def _delivered(self, err: Any, msg: Any) -> None:
        with self._lock:
            if err is not None:
                self.failed += 1
                return
            key = (msg.topic(), msg.partition())
            self.ends[key] = max(self.ends.get(key, 0), msg.offset() + 1)

    def _produce(self, topic: str, key: str, value: bytes, callback: Any = None) -> None:
        def both(err: Any, msg: Any) -> None:
            self._delivered(err, msg)
            if callback is not None:
                callback(err, msg)
        super()._produce(topic, key, value, both)


def committed_offsets(bootstrap: str, group: str, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offset per (topic, partition) (0 when none): a plain OffsetFetch."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {(t, p): reader.committed(TopicPartition(t, p)) or 0 for t, p in partitions}
    finally:
        reader.close(autocommit=False)


def checkpoint_state(rest_url: str, job_id: str) -> dict[str, Any]:
    """Size of the latest completed checkpoint (Flink REST /jobs/<id>/checkpoints)."""
    with urllib.request.urlopen(f"{rest_url}/jobs/{job_id}/checkpoints", timeout=10) as resp:
        stats = json.loads(resp.read())
    latest = (stats.get("latest") or {}).get("completed") or {}
    return {"checkpoint_id": latest.get("id"), "state_bytes": latest.get("state_size"),
            "checkpointed_bytes": latest.get("checkpointed_size"),
            "completed": (stats.get("counts") or {}).get("completed"),
            "failed": (stats.get("counts") or {}).get("failed")}


def slope_per_min(t_s: Sequence[float], values: Sequence[float | None]) -> float | None:
    """Least-squares slope (units per minute) of the samples that have a value."""
    pts = [(t, v) for t, v in zip(t_s, values) if v is not None]
    if len(pts) < 3:
        return None
    t, v = np.array(pts, dtype=float).T
    return round(float(np.polyfit(t / 60.0, v, 1)[0]), 3)


def verdicts(samples: list[dict[str, Any]], quiet_at_s: float, ttl_s: float, ckpt_s: float) -> dict[str, Any]:
    """Flatness over the last half of the run, and whether state fell after the big cohort went quiet."""
    half = samples[len(samples) // 2:]
    t = [s["t_s"] for s in half]
    state = [s["state_bytes"] for s in samples]
    before = [s["state_bytes"] for s in samples if s["t_s"] <= quiet_at_s and s["state_bytes"]]
    # Expired entries are removed as other keys are touched, and a checkpoint must complete after that.
    after = [s["state_bytes"] for s in samples if s["t_s"] >= quiet_at_s + ttl_s + 3 * ckpt_s and s["state_bytes"]]
    out = {
        "rss_jvm_mb_per_min_last_half": slope_per_min(t, [s["rss_mb"].get("taskmanager_jvm") for s in half]),
        "state_bytes_per_min_last_half": slope_per_min(t, [s["state_bytes"] for s in half]),
        "lag_records_per_min_last_half": slope_per_min(t, [s["lag_records"] for s in half]),
        "max_lag_records": max((s["lag_records"] for s in samples if s["lag_records"] is not None), default=None),
        "state_bytes_peak_before_quiet": max(before, default=None),
        "state_bytes_min_after_ttl": min(after, default=None),
        "max_state_bytes": max((s for s in state if s), default=None),
    }
    if before and after:
        out["ttl_evicted"] = min(after) < max(before)
        out["state_fell_pct"] = round(100 * (1 - min(after) / max(before)), 1)
    else:
        out["ttl_evicted"] = None  # the run was too short to see it (quiet + TTL + 3 checkpoints)
    return out


def markdown(result: dict[str, Any]) -> str:
    s, v = result["settings"], result["verdicts"]
    rows = ["| t (s) | phase | answered (window) | p50 / p99 ms | lag (records) | state (KB) | JVM RSS (MB) |",
            "|---|---|---|---|---|---|---|"]
    for x in result["samples"]:
        lat = x["latency_ms"]
        rows.append(f"| {x['t_s']:.0f} | {x['phase']} | {x['answered']} | {lat.get('p50', '-')} / {lat.get('p99', '-')} | "
                    f"{x['lag_records']} | {'-' if x['state_bytes'] is None else round(x['state_bytes'] / 1024, 1)} | "
                    f"{x['rss_mb'].get('taskmanager_jvm', '-')} |")
    head = [f"Soak: {s['minutes']} min at {s['rate']} req/s ({s['events_per_request']} events each), "
            f"model {s['model']}, state TTL {s['state_ttl_ms'] / 1000:.0f} s, checkpoints every "
            f"{s['checkpoint_interval_ms'] / 1000:.0f} s; {s['users']} users until t = {result['quiet_at_s']:.0f} s, "
            f"then only {s['active_users']} others.", "",
            f"- sent {result['totals']['sent']}, answered {result['totals']['answered']}, "
            f"duplicates {result['totals']['duplicates']}, send failures {result['totals']['send_failures']}",
            f"- JVM RSS slope over the last half: {v['rss_jvm_mb_per_min_last_half']} MB/min; state: "
            f"{v['state_bytes_per_min_last_half']} B/min; lag: {v['lag_records_per_min_last_half']} records/min "
            f"(max lag {v['max_lag_records']})",
            f"- TTL eviction: state peak before the big cohort went quiet {v['state_bytes_peak_before_quiet']} B, "
            f"lowest after quiet + TTL + 3 checkpoints {v['state_bytes_min_after_ttl']} B -> evicted: "
            f"{v['ttl_evicted']}" + (f" (state fell {v['state_fell_pct']}%)" if "state_fell_pct" in v else ""), ""]
    return "\n".join(head + rows) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = result["samples"]
    t = [x["t_s"] / 60 for x in xs]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(t, [x["rss_mb"].get("taskmanager_jvm") for x in xs], "-o", ms=3, label="Flink JVM RSS (MB)")
    axes[0].set_ylabel("MB")
    axes[1].plot(t, [None if x["state_bytes"] is None else x["state_bytes"] / 1024 for x in xs], "-o", ms=3,
                 color="tab:green", label="checkpointed state (KB)")
    axes[1].set_ylabel("KB")
    axes[2].plot(t, [x["lag_records"] for x in xs], "-o", ms=3, color="tab:red", label="consumer lag (records)")
    axes[2].set_ylabel("records")
    axes[2].set_xlabel("minutes")
    quiet = result["quiet_at_s"] / 60
    ttl = result["settings"]["state_ttl_ms"] / 60000
    for ax in axes:
        ax.axvline(quiet, color="grey", linestyle=":", label="big cohort goes quiet")
        ax.axvline(quiet + ttl, color="black", linestyle="--", label="... + state TTL")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_title(f"Soak: {result['settings']['rate']} req/s for {result['settings']['minutes']} min")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests/s, open loop")
    p.add_argument("--events-per-request", type=int, default=5)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--users", type=int, default=2000, help="the cohort that goes quiet")
    p.add_argument("--active-users", type=int, default=200, help="the cohort that carries the load afterwards")
    p.add_argument("--quiet-after", type=float, default=0.5, help="fraction of the run after which the big cohort stops")
    p.add_argument("--state-ttl-ms", type=int, default=300_000)
    p.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    p.add_argument("--sample-s", type=float, default=15.0)
    p.add_argument("--model", default=str(REPO_ROOT / "models" / "sasrec" / "v3"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    args = parse_args(argv)
    from jobs.local_broker import LocalBroker, free_port
    from jobs.rerank_job import running
    from models.artifact import load_artifact

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = sorted(load_artifact(args.model).item_to_index)
    # History lengths are irrelevant here (no prefill): state is what the soak's own events build.
    big = Workload([f"soak-a{i}" for i in range(args.users)], np.zeros(args.users, int), vocab, args.seed)
    small = Workload([f"soak-b{i}" for i in range(args.active_users)], np.zeros(args.active_users, int), vocab,
                     args.seed + 1)
    total_s = args.minutes * 60
    quiet_at_s = total_s * args.quiet_after
    rest_port = free_port()
    run_id = uuid.uuid4().hex[:6]
    samples: list[dict[str, Any]] = []
    with LocalBroker() as broker:
        topics = {k: f"soak-{k}-{run_id}" for k in ("events", "requests", "ranked", "dead")}
        broker.create_topics(list(topics.values()), partitions=2)
        cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["events"],
                        requests_topic=topics["requests"], output_topic=topics["ranked"],
                        dead_letter_topic=topics["dead"], group_id=f"soak-{run_id}", model_dir=args.model,
                        state_ttl_ms=args.state_ttl_ms, checkpoint_interval_ms=args.checkpoint_interval_ms,
                        job_name="soak",
                        # The minicluster's REST API on a free loopback port: checkpoint statistics.
                        flink_conf=_flink_conf({"rest.port": str(rest_port)}, Path(tempfile.mkdtemp(prefix="soak-"))))
        sender = CountingSender(broker.bootstrap_servers, topics["events"], topics["requests"], 5)
        with running(cfg) as client:
            job_id = str(client.get_job_id())
            answers = Answers(broker.bootstrap_servers, topics["ranked"])
            sent: dict[str, tuple[float, float]] = {}
            stop = threading.Event()

            def send_loop() -> None:
                # Chunks of 10 s of schedule, so the cohort switch happens on time; rate x duration
                # requests in all.
                planned, done, n = int(args.rate * total_s), 0, 0
                t0 = time.monotonic()
                while not stop.is_set() and done < planned:
                    work = big if time.monotonic() - t0 < quiet_at_s else small
                    schedule = work.schedule(min(int(args.rate * 10), planned - done), args.events_per_request,
                                             args.candidates, 10, f"{run_id}-{n}")
                    sent.update(sender.run(schedule, args.rate))
                    done += len(schedule)
                    n += 1

            loader = threading.Thread(target=send_loop, name="soak-loader", daemon=True)
            t_start = time.monotonic()
            loader.start()
            last_rids: set[str] = set()
            try:
                while loader.is_alive():
                    loader.join(timeout=args.sample_s)
                    now = time.monotonic() - t_start
                    window = [r for r in list(sent) if r not in last_rids]
                    last_rids.update(window)
                    lat = [(answers.received[r][0] - sent[r][0]) * 1000 for r in window if r in answers.received]
                    sender.producer.poll(0)  # serve pending delivery reports: `ends` is then current
                    with sender._lock:
                        ends = dict(sender.ends)
                    committed = committed_offsets(broker.bootstrap_servers, cfg.group_id, list(ends))
                    try:
                        state = checkpoint_state(f"http://127.0.0.1:{rest_port}", job_id)
                    except OSError as exc:
                        log.warning("checkpoint statistics unavailable: %s", exc)
                        state = {"state_bytes": None}
                    sample = {"t_s": round(now, 1), "phase": "big cohort" if now <= quiet_at_s else "small cohort",
                              "sent": len(window), "answered": len(lat), "latency_ms": percentiles(lat),
                              # A partition's commit may be ahead of the delivery reports served so far.
                              "lag_records": sum(max(0, ends[k] - committed.get(k, 0)) for k in ends) if ends else None,
                              "rss_mb": rss_mb(), **state}
                    samples.append(sample)
                    log.info("soak t=%.0fs: %s", now, {k: sample[k] for k in ("answered", "lag_records", "state_bytes",
                                                                              "rss_mb")})
            finally:
                stop.set()
                loader.join(timeout=60)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(r in answers.received for r in sent):
                    time.sleep(0.2)
                answers.close()
    result = {
        "settings": {**vars(args), "out": None, "model": str(Path(args.model).relative_to(REPO_ROOT))
                     if Path(args.model).resolve().is_relative_to(REPO_ROOT) else args.model,
                     "cpus": os.cpu_count(), "delivery_guarantee": cfg.delivery_guarantee},
        "quiet_at_s": quiet_at_s,
        "totals": {"sent": len(sent), "answered": sum(1 for r in sent if r in answers.received),
                   "duplicates": answers.duplicates, "send_failures": sender.failed},
        "verdicts": verdicts(samples, quiet_at_s, args.state_ttl_ms / 1000, args.checkpoint_interval_ms / 1000),
        "samples": samples,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "soak.md").write_text(md)
    plot(result, out / "soak.png")
    print(md)
    print(f"wrote {out / 'soak.json'}, soak.md, soak.png")
    return result


if __name__ == "__main__":
    main()
