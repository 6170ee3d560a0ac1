"""Benchmark of the request path: open-loop latency, saturation, efficiency, freshness, memory.

    make bench                     # = .venv/bin/python -m bench.hot_path
    .venv/bin/python -m bench.hot_path --variants keyed --rates 100,500 --duration 10

In one invocation, side by side on this machine: the bare ONNX Runtime limit of each served model
(same request mix, same threads), then each job variant on the local minicluster with the broker
on loopback, fed by an open-loop sender (its schedule never waits for the job) at fixed offered
loads. Each request is preceded by `--events-per-request` events of its user; users are drawn from
`--users`, each with a history whose length is drawn from MovieLens-1M's per-user counts (the
lengths only: ids are the model's own vocabulary). Latency is request produced -> ranked list
consumed, on one clock. Writes bench/results/latest.json, latest.md and latency.png.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import pickle
import platform
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jobs.config import REPO_ROOT, JobConfig

log = logging.getLogger("bench")
OUT = REPO_ROOT / "bench" / "results"
MODELS = {"L200": REPO_ROOT / "models" / "sasrec" / "v3", "L50": REPO_ROOT / "models" / "sasrec" / "cut2001",
          "V4": REPO_ROOT / "models" / "sasrec" / "v4"}
# name -> (model, job settings): every variant is a fresh job on the same broker.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "keyed": ("L200", {}),
    # The content-aware default, same size; reasons on. Not in the default run: --variants keyed,keyed-v4
    "keyed-v4": ("V4", {}),
    "keyed-L50": ("L50", {}),
    "keyed-int8": ("L200", {"model_int8": 1}),
    "keyed-p2": ("L200", {"parallelism": 2}),
    "pandas": ("L200", {"scoring": "pandas"}),
}
EVENT_NAMES = ("view", "click", "cart", "purchase", "rate")


@dataclass(frozen=True)
class Workload:
    """Who asks and what their history looks like (pure; seeded)."""

    users: list[str]
    history_len: np.ndarray   # (U,) events each user has before the load starts
    vocab: list[str]          # item ids to draw from (the model's vocabulary)
    seed: int

    def prefill(self, cap: int) -> list[tuple[str, bytes]]:
        """(user, event JSON) for each user's last min(history_len, cap) events, users interleaved."""
        rng = np.random.default_rng(self.seed)
        out = []
        n = np.minimum(self.history_len, cap)
        for j in range(int(n.max(initial=0))):
            for u in np.flatnonzero(n > j):
                out.append((self.users[u], _event(self.users[u], self.vocab[rng.integers(len(self.vocab))], j)))
        return out

    def schedule(self, n_requests: int, events_per_request: int, candidates: int, k: int | None,
                 tag: str) -> list[tuple[str, list[bytes], bytes, str]]:
        """Pre-serialized (user, [event JSON], request JSON, request_id) in send order."""
        rng = np.random.default_rng(abs(hash((self.seed, tag))) % 2**32)
        vocab = np.array(self.vocab, dtype=object)
        out = []
        for i in range(n_requests):
            user = self.users[rng.integers(len(self.users))]
            events = [_event(user, vocab[rng.integers(len(vocab))], i) for _ in range(events_per_request)]
            rid = f"{tag}-{i}"
            cands = vocab[rng.choice(len(vocab), size=min(candidates, len(vocab)), replace=False)].tolist()
            req = {"request_id": rid, "user_id": user, "candidates": cands, "ts": 1_700_000_000_000 + i}
            if k is not None:
                req["k"] = k
            out.append((user, events, json.dumps(req, separators=(",", ":")).encode(), rid))
        return out


def _event(user: str, item: str, j: int) -> bytes:
    return json.dumps({"user_id": user, "item_id": item, "event": EVENT_NAMES[j % 5],
                       "ts": 1_600_000_000_000 + j}, separators=(",", ":")).encode()


def history_lengths(n_users: int, seed: int) -> tuple[np.ndarray, str]:
    """Per-user history lengths drawn from MovieLens-1M's users (a lognormal fit when it is absent)."""
    rng = np.random.default_rng(seed)
    try:
        from models.data import load_ml1m

        counts = np.diff(load_ml1m().interactions.offsets)
        return rng.choice(counts, size=n_users), "ml-1m per-user interaction counts"
    except Exception as exc:  # noqa: BLE001 - the bench still runs without the data set
        log.warning("ML-1M not available (%s): lognormal history lengths", exc)
        return np.maximum(1, rng.lognormal(4.6, 1.0, size=n_users).astype(int)), "lognormal(4.6, 1.0)"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {}
    p = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1),
            "max": round(float(np.max(values)), 1)}


# ---------------------------------------------------------------------------------------------
# The limit: bare ONNX Runtime on the same request mix, one single-threaded session per core used.

def _bare_worker(model_dir: str, int8: bool, rows: bytes, seconds: float, queue) -> None:
    from udfs.scoring import OnnxScorer

    scorer = OnnxScorer(model_dir, ["CPUExecutionProvider"], threads=1, int8=int8)
    requests = pickle.loads(rows)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        items, events, cands = requests[done % len(requests)]
        scorer.score_one(items, events, cands)
        done += 1
    queue.put(done / (time.perf_counter() - start))


def bare_lists_per_s(model_dir: Path, int8: bool, work: Workload, processes: int, candidates: int,
                     seconds: float) -> float:
    """Lists/s of `processes` concurrent single-threaded ORT sessions, each scoring one request at a time."""
    from models.artifact import load_artifact

    max_len = load_artifact(model_dir).max_len
    rng = np.random.default_rng(work.seed)
    rows = []
    for _ in range(500):
        n = int(min(work.history_len[rng.integers(len(work.users))] + 5, max_len))
        items = [work.vocab[i] for i in rng.integers(len(work.vocab), size=n)]
        rows.append((items, [EVENT_NAMES[i % 5] for i in range(n)],
                     [work.vocab[i] for i in rng.choice(len(work.vocab), size=candidates, replace=False)]))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_bare_worker, args=(str(model_dir), int8, pickle.dumps(rows), seconds, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return round(sum(rates), 1)


# ---------------------------------------------------------------------------------------------
# The job under open-loop load.

class Answers:
    """Consumes the output topic on a background thread: first receipt time per request_id.

    kafka-python, not confluent-kafka, on this side: librdkafka's consumer saw ~30 ms p50 from
    produce to consume on the local broker where kafka-python (and the job's Java client) saw ~3 ms.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5,
                                      max_poll_records=5000)
        partitions = self.consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        # rid -> (monotonic s, history_len, fallback, model_version, arm)
        self.received: dict[str, tuple[float, int, bool, str, str]] = {}
        self.duplicates = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-answers", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=50).values():
                now = time.monotonic()
                for r in records:
                    v = json.loads(r.value)
                    if v["request_id"] in self.received:
                        self.duplicates += 1
                    else:
                        self.received[v["request_id"]] = (now, v["history_len"], v["fallback"],
                                                          v.get("model_version", ""), v.get("arm", ""))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)
        self.consumer.close()


class Sender:
    """Open loop: request i is produced at start + i / rate, whatever the job does."""

    def __init__(self, bootstrap: str, events_topic: str, requests_topic: str, linger_ms: float = 1) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all",
                                  "socket.nagle.disable": True})
        self.events_topic, self.requests_topic = events_topic, requests_topic
        self._ts = 0

    def prefill(self, records: list[tuple[str, bytes]], topic: str) -> dict[int, int]:
        ends: dict[int, int] = {}

        def delivered(err, msg) -> None:
            if err is None:
                ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

        for i, (key, value) in enumerate(records):
            self._produce(topic, key, value, delivered)
            if i % 10000 == 0:
                self.producer.poll(0)
        self.producer.flush(120)
        return ends

    def _produce(self, topic: str, key: str, value: bytes, callback=None) -> None:
        # Record timestamps set here and strictly increasing, as the replay's sender does: a
        # request's as-of time must not tie with, or precede, the events sent before it.
        self._ts = max(int(time.time() * 1000), self._ts + 1)
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=callback, timestamp=self._ts)
                return
            except BufferError:  # local queue full: let librdkafka send
                self.producer.poll(0.01)

    def run(self, schedule: list, rate: float) -> dict[str, tuple[float, float]]:
        """Send; returns request_id -> (monotonic send time of the request, of its last event)."""
        sent: dict[str, tuple[float, float]] = {}
        start = time.monotonic()
        for i, (user, events, request, rid) in enumerate(schedule):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for e in events:
                self._produce(self.events_topic, user, e)
            last_event = time.monotonic()
            self._produce(self.requests_topic, user, request)
            sent[rid] = (time.monotonic(), last_event)
            if i % 50 == 0:
                self.producer.poll(0)
        self.producer.flush(60)
        return sent


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def _cpu_s(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of `pid` and, with `children`, its live children (the pandas path's
    Python workers)."""
    total = 0.0
    for p in [pid] + (_children(pid) if children else []):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _flink_jvm() -> int | None:
    jvms = [c for c in _children(os.getpid()) if b"java" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return jvms[0] if jvms else None


def rss_mb() -> dict[str, float]:
    """The minicluster JVM (TaskManager; thread-mode Python runs inside it) and its Python workers."""
    jvm = _flink_jvm()
    if jvm is None:
        return {}
    workers = [c for c in _children(jvm) if b"python" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return {"taskmanager_jvm": _proc_rss_mb(jvm),
            "python_workers": round(sum(_proc_rss_mb(w) for w in workers), 1)}


def run_level(sender: Sender, answers: Answers, work: Workload, rate: float, seconds: float, args,
              tag: str, expected: dict[str, int], pids: dict[str, int]) -> dict[str, Any]:
    """One offered load; `expected` counts events sent per user so far (for freshness); `pids`: the
    processes whose CPU is reported (broker, Flink JVM, this loader)."""
    schedule = work.schedule(max(1, int(rate * seconds)), args.events_per_request, args.candidates, args.k, tag)
    want = {}
    for user, events, _, rid in schedule:
        expected[user] = expected.get(user, 0) + len(events)
        want[rid] = expected[user]
    own = {k: k != "loader" for k in pids}  # the loader's children are the broker and the JVM
    cpu0, wall0 = {k: _cpu_s(p, own[k]) for k, p in pids.items()}, time.monotonic()
    sent = sender.run(schedule, rate)
    send_s = time.monotonic() - wall0
    cpu = {k: _cpu_s(p, own[k]) for k, p in pids.items()}
    deadline = time.monotonic() + args.drain_s
    while time.monotonic() < deadline and not all(r in answers.received for r in sent):
        time.sleep(0.05)
    got = {r: answers.received[r] for r in sent if r in answers.received}
    lat = [(got[r][0] - sent[r][0]) * 1000 for r in got]
    fresh = [r for r in got if got[r][1] == want[r]]
    cores = {k: round((cpu[k] - cpu0[k]) / max(send_s, 1e-9), 2) for k in pids}
    return {**percentiles(lat), "answered": len(got), "sent": len(sent), "offered_rps": rate,
            "achieved_send_rps": round(len(sent) / send_s, 1),
            "fresh": len(fresh), "stale": sum(1 for r in got if got[r][1] < want[r]),
            "ahead": sum(1 for r in got if got[r][1] > want[r]),
            "fallback": sum(1 for r in got if got[r][2]),
            "freshness_ms": percentiles([(got[r][0] - sent[r][1]) * 1000 for r in fresh]),
            "cpu_cores": cores, "loader_cpu_share": round(cores["loader"] / (os.cpu_count() or 1), 3)}


def ok(level: dict[str, Any]) -> bool:
    return level["answered"] == level["sent"] and level.get("p99", 1e9) < 1000


def run_variant(name: str, broker, work: Workload, args) -> dict[str, Any]:
    from jobs.kafka_io import wait_committed
    from jobs.rerank_job import running
    from models.artifact import load_artifact

    model_key, settings = VARIANTS[name]
    model = MODELS[model_key]
    run_id = uuid.uuid4().hex[:6]
    topics = {k: f"bench-{k}-{run_id}" for k in ("events", "requests", "ranked", "dead")}
    broker.create_topics(list(topics.values()), partitions=args.partitions)
    settings = {"parallelism": args.parallelism, **settings}
    cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["events"],
                    requests_topic=topics["requests"], output_topic=topics["ranked"],
                    dead_letter_topic=topics["dead"], group_id=f"bench-{run_id}", model_dir=str(model),
                    job_name=f"bench-{name}",
                    flink_conf=_flink_conf(args.flink, Path(args.out)),
                    **{**settings, **{k: type(getattr(JobConfig, k, ""))(v) if hasattr(JobConfig, k) else v
                                      for k, v in args.job.items()}})
    max_len = load_artifact(model).max_len
    result: dict[str, Any] = {"model": f"{model.parent.name}/{model.name}", "max_len": max_len,
                              "job": {"scoring": cfg.scoring, "model_int8": cfg.model_int8,
                                      "parallelism": cfg.parallelism,
                                      "request_hold_ms": cfg.request_hold_ms,
                                      "source_idle_timeout_ms": cfg.source_idle_timeout_ms,
                                      "fetch_max_wait_ms": cfg.fetch_max_wait_ms}, "latency_ms": {}}
    sender = Sender(broker.bootstrap_servers, topics["events"], topics["requests"], args.loader_linger_ms)
    with running(cfg):
        t0 = time.monotonic()
        prefill = work.prefill(max_len)
        ends = sender.prefill(prefill, topics["events"])
        wait_committed(broker.bootstrap_servers, cfg.group_id, topics["events"], ends, args.prefill_timeout_s)
        result["prefill"] = {"events": len(prefill), "seconds": round(time.monotonic() - t0, 1)}
        log.info("%s: prefilled %d events in %.1f s", name, len(prefill), time.monotonic() - t0)
        result["rss_mb_start"] = rss_mb()
        pids = {"broker": broker.process.pid, "flink_jvm": _flink_jvm() or os.getpid(), "loader": os.getpid()}
        answers = Answers(broker.bootstrap_servers, topics["ranked"])
        # history_len counts every event consumed for the user: the prefill, then the load's.
        expected = {u: int(n) for u, n in zip(work.users, np.minimum(work.history_len, max_len))}
        try:
            run_level(sender, answers, work, max(args.rates[0] / 2, 10), args.warmup_s, args, f"{run_id}-warm", expected, pids)
            if args.unloaded_s:
                result["unloaded"] = run_level(sender, answers, work, 10, args.unloaded_s, args, f"{run_id}-idle",
                                               expected, pids)
                log.info("%s unloaded: %s", name, result["unloaded"])
            for rate in args.rates:
                level = run_level(sender, answers, work, rate, args.duration_s, args, f"{run_id}-{rate}", expected, pids)
                result["latency_ms"][str(rate)] = level
                log.info("%s @ %s req/s: %s", name, rate, level)
                if not ok(level):
                    break  # saturated: a backlog now distorts every higher load
        finally:
            answers.close()
            result["rss_mb_end"] = rss_mb()
            result["duplicates"] = answers.duplicates
    passing = [int(r) for r, lv in result["latency_ms"].items() if ok(lv)]
    result["max_rps"] = max(passing, default=0)
    return result


def state_bytes_per_user(work: Workload) -> dict[str, dict[str, int]]:
    """Bytes of one user's keyed state value (as stored: pickled bytes), compact vs the JSON it replaced."""
    from udfs.history import UserHistory, apply_event
    from udfs.records import UserEvent

    out: dict[str, dict[str, int]] = {"compact": {}, "json_before": {}}
    rng = np.random.default_rng(work.seed)
    for n in (50, 200):
        h = UserHistory()
        for j in range(n):
            ev = UserEvent("u", work.vocab[rng.integers(len(work.vocab))], EVENT_NAMES[j % 5], 1_600_000_000_000 + j)
            h = apply_event(h, ev, 1_700_000_000_000 + 37 * j, n, 7 * 24 * 3600 * 1000)
        out["compact"][str(n)] = len(pickle.dumps(h.to_bytes(), protocol=pickle.HIGHEST_PROTOCOL))
        before = json.dumps({"i": h.items, "e": h.events, "t": [1_600_000_000_000 + j for j in range(n)],
                             "l": h.log_ts, "n": h.count, "d": h.decayed, "da": h.decayed_at}, separators=(",", ":"))
        out["json_before"][str(n)] = len(before.encode())
    return out


def markdown(result: dict[str, Any]) -> str:
    rows = ["| variant | model | offered req/s | answered/sent | p50 ms | p95 ms | p99 ms | max ms | fresh | "
            "CPU cores: broker / Flink JVM / loader |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        levels = ([("unloaded (10)", v["unloaded"])] if "unloaded" in v else []) + list(v["latency_ms"].items())
        for rate, lv in levels:
            rows.append(f"| {name} | {v['model']} | {rate} | {lv['answered']}/{lv['sent']} | {lv.get('p50', '-')} | "
                        f"{lv.get('p95', '-')} | {lv.get('p99', '-')} | {lv.get('max', '-')} | "
                        f"{lv['fresh']}/{lv['answered']} | {lv['cpu_cores']['broker']} / {lv['cpu_cores']['flink_jvm']} / "
                        f"{lv['cpu_cores']['loader']} |")
    summary = ["| variant | bare ORT lists/s | max req/s (all answered, p99 < 1 s) | efficiency |", "|---|---|---|---|"]
    for name, v in result["variants"].items():
        summary.append(f"| {name} | {v['bare_onnx_lists_per_s']} | {v['max_rps']} | {v['efficiency']} |")
    return "\n".join(summary) + "\n\n" + "\n".join(rows) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, v in result["variants"].items():
        rates = [float(r) for r in v["latency_ms"]]
        ax.plot(rates, [v["latency_ms"][r].get("p99", np.nan) for r in v["latency_ms"]], "-o", label=f"{name} p99")
    ax.axhline(50, color="grey", linestyle=":", label="50 ms target")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency request -> ranked list (ms)")
    ax.set_yscale("log")
    ax.set_title("Open-loop latency on 2 cores (job + broker + loader)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "keyed-v4"),
                   help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--rates", default="100,250,500,750,1000,1500,2000", help="offered loads, req/s, ascending")
    p.add_argument("--duration-s", type=float, default=30.0, help="per offered load")
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--unloaded-s", type=float, default=10.0, help="10 req/s for this long (0: skip)")
    p.add_argument("--drain-s", type=float, default=10.0, help="wait for answers after the last request")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--events-per-request", type=int, default=5)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--k", type=int, default=10, help="list length asked for (0: the whole list)")
    p.add_argument("--loader-linger-ms", type=float, default=5.0,
                   help="the sender's producer batching, part of the measured latency (5: librdkafka's and "
                        "Kafka 4's default; 1 doubled the broker's CPU per request)")
    p.add_argument("--parallelism", type=int, default=1,
                   help="job parallelism (a variant may set its own); thread mode shares one GIL per TaskManager")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--bare-s", type=float, default=8.0, help="seconds of bare ORT scoring per model")
    p.add_argument("--prefill-timeout-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--job", action="append", default=[], metavar="FIELD=VALUE",
                   help="a JobConfig setting for every variant (repeatable), e.g. --job request_hold_ms=0")
    p.add_argument("--flink", action="append", default=[], metavar="KEY=VALUE",
                   help="a Flink setting for every variant (repeatable), e.g. --flink execution.buffer-timeout.interval='5 ms'")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    args.rates = [float(r) if "." in r else int(r) for r in args.rates.split(",")]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}")
    args.k = args.k or None
    args.job = dict(kv.split("=", 1) for kv in args.job)
    args.flink = dict(kv.split("=", 1) for kv in args.flink)
    return args


def _flink_conf(overrides: dict[str, str], out: Path) -> str:
    """flink-conf/config.yaml with `overrides`, written beside the results (the default file when none)."""
    if not overrides:
        return JobConfig().flink_conf
    import yaml

    conf = yaml.safe_load(Path(JobConfig().flink_conf).read_text())
    conf.update(overrides)
    path = out / "flink-conf-bench.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    args = parse_args(argv)
    from jobs.local_broker import LocalBroker
    from models.artifact import load_artifact

    lengths, source = history_lengths(args.users, args.seed)
    vocab = sorted(load_artifact(MODELS["L200"]).item_to_index)
    work = Workload([f"user-{i}" for i in range(args.users)], lengths, vocab, args.seed)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "history_lengths": source,
                     "delivery_guarantee": "AT_LEAST_ONCE", "loader": "confluent-kafka, same machine",
                     "flink_conf": str(Path(JobConfig().flink_conf).relative_to(REPO_ROOT))},
        "state_bytes_per_user": state_bytes_per_user(work),
        "variants": {},
    }
    bare: dict[tuple[str, bool], float] = {}
    for name in args.variants:  # the limit first, on a quiet machine
        model_key, settings = VARIANTS[name]
        key = (model_key, bool(settings.get("model_int8")))
        if key not in bare:
            bare[key] = bare_lists_per_s(MODELS[model_key], key[1], work, os.cpu_count() or 1, args.candidates,
                                         args.bare_s)
            log.info("bare ORT %s%s: %.0f lists/s on %d processes", model_key, " int8" if key[1] else "",
                     bare[key], os.cpu_count() or 1)
    with LocalBroker() as broker:
        for name in args.variants:
            v = run_variant(name, broker, work, args)
            model_key, settings = VARIANTS[name]
            v["bare_onnx_lists_per_s"] = bare[(model_key, bool(settings.get("model_int8")))]
            v["efficiency"] = round(v["max_rps"] / v["bare_onnx_lists_per_s"], 3)
            result["variants"][name] = v
    default = result["variants"].get("keyed") or next(iter(result["variants"].values()))
    l50 = result["variants"].get("keyed-L50", {})
    levels = default["latency_ms"]
    # Freshness at the highest load at most half of saturation (or the lowest load).
    half = [r for r in levels if float(r) <= default["max_rps"] / 2] or list(levels)[:1]
    result.update({
        "bare_onnx_lists_per_s": default["bare_onnx_lists_per_s"], "max_rps": default["max_rps"],
        "efficiency": default["efficiency"], "unloaded_p50_ms": default.get("unloaded", {}).get("p50"),
        "latency_ms": {r: {k: lv.get(k) for k in ("p50", "p95", "p99", "max", "answered", "sent")}
                       for r, lv in levels.items()},
        "latency_ms_l50": {r: {k: lv.get(k) for k in ("p50", "p95", "p99", "max", "answered", "sent")}
                           for r, lv in l50.get("latency_ms", {}).items()},
        "freshness_ms": {**levels[half[-1]]["freshness_ms"], "at_rps": half[-1] if half else None},
        "rss_mb": {"start": default["rss_mb_start"], "end": default["rss_mb_end"]},
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "latest.md").write_text(f"Machine: {json.dumps(result['machine'])}\n\nSettings: "
                                   f"{json.dumps(result['settings'])}\n\n{md}")
    plot(result, out / "latency.png")
    print(md)
    print(f"wrote {out / 'latest.json'}, latest.md, latency.png")
    return result


if __name__ == "__main__":
    main()
