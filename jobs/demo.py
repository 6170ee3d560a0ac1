"""The demo: the real job on the local minicluster, fed real MovieLens-1M behavior through a local
Kafka-protocol broker, ranking each sampled user's held-out next movie among 100 unseen ones.

    python -m jobs.demo [--users 300] [--parallelism 1]

Starts a broker, runs the job, replays events, sends requests at a steady rate, prints ranked
lists (with titles) and a summary (delivery, online vs offline quality, latency), writes
results/demo.json, then stops everything it started.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jobs.config import REPO_ROOT, JobConfig
from jobs.kafka_io import Producer, TopicReader, produce, wait_committed
from jobs.local_broker import LocalBroker
from jobs.online_eval import delivery, latency_ms, ranking_quality, target_rank
from jobs.rerank_job import running
from jobs.workload import Workload, holdout_workload
from models.artifact import load_artifact
from models.data import load_ml1m
from models.metrics import summarize
from udfs.scoring import OnnxScorer

log = logging.getLogger("demo")
MALFORMED = [("demo", "{this is not json"), ("demo", {"user_id": "demo", "item_id": "1", "event": "teleport", "ts": 0})]


def offline_quality(model_dir: str, work: Workload, max_len: int) -> dict:
    """The same model scoring the same histories and candidates directly, outside Flink."""
    scorer = OnnxScorer(model_dir, ["CPUExecutionProvider"])
    hist: dict[str, list[dict]] = {}
    for user, ev in work.events:
        hist.setdefault(user, []).append(ev)
    ranks = []
    for user, req in work.requests:
        h = hist.get(user, [])[-max_len:]
        scores = scorer.score([[e["item_id"] for e in h]], [[e["event"] for e in h]], [req["candidates"]])[0]
        items = [{"item_id": c, "score": float(s)} for c, s in zip(req["candidates"], scores)]
        ranks.append(target_rank(items, work.targets[req["request_id"]]))
    return summarize(np.array(ranks))


def send_requests(bootstrap: str, topic: str, requests: list[tuple[str, dict]], rate: float) -> dict[str, int]:
    """Send at a steady `rate` per second; `ts` is stamped at send time (latency starts there)."""
    producer, sent_at = Producer(bootstrap), {}
    start = time.monotonic()
    for n, (key, req) in enumerate(requests):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        req = {**req, "ts": int(time.time() * 1000)}
        sent_at[req["request_id"]] = req["ts"]
        producer.send(topic, key, req)
        producer.flush()
    producer.close()
    return sent_at


def print_lists(outputs: list[dict], work: Workload, titles: dict[str, str], n: int = 3) -> None:
    for out in outputs[:n]:
        v = out["value"]
        target = work.targets.get(v["request_id"])
        print(f"\nuser {v['user_id']} (history_len {v['history_len']}, model {v['model_version']}):")
        for pos, item in enumerate(v["items"][:10], 1):
            mark = "  <- held-out next movie" if item["item_id"] == target else ""
            print(f"  {pos:2d}. {item['score']:7.3f}  {titles.get(item['item_id'], item['item_id'])}{mark}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    artifact = load_artifact(args.model)
    data = load_ml1m()
    work = holdout_workload(data.interactions, len(data.items.titles), args.users, args.negatives,
                            args.history, args.seed)
    log.info("workload: %d events, %d requests from %d users", len(work.events), len(work.requests), args.users)
    run_id = uuid.uuid4().hex[:6]
    topics = {"events": f"user-events-{run_id}", "requests": f"rank-requests-{run_id}",
              "output": f"ranked-lists-{run_id}", "dead": f"dead-letters-{run_id}"}
    with LocalBroker() as broker:
        broker.create_topics(list(topics.values()), partitions=2)
        cfg = JobConfig(bootstrap_servers=broker.bootstrap_servers, events_topic=topics["events"],
                        requests_topic=topics["requests"], output_topic=topics["output"],
                        dead_letter_topic=topics["dead"], group_id=f"demo-{run_id}", model_dir=args.model,
                        parallelism=args.parallelism, checkpoint_interval_ms=1000, job_name="rerank-demo")
        t0 = time.monotonic()
        ends = produce(broker.bootstrap_servers, topics["events"], work.events + MALFORMED)
        outputs = TopicReader(broker.bootstrap_servers, topics["output"])
        dead = TopicReader(broker.bootstrap_servers, topics["dead"])
        with running(cfg):
            wait_committed(broker.bootstrap_servers, cfg.group_id, topics["events"], ends, args.timeout)
            state_ready_s = time.monotonic() - t0
            # Send from a thread while this one reads, so receipt times are real.
            sent_at: dict[str, int] = {}
            sender = threading.Thread(target=lambda: sent_at.update(send_requests(
                broker.bootstrap_servers, topics["requests"], work.requests, args.rate)))
            sender.start()
            outputs.read_until(lambda rs: len({r["value"]["request_id"] for r in rs}) >= len(work.requests),
                               args.timeout)
            sender.join()
            dead.read_until(lambda rs: len(rs) >= len(MALFORMED), 10, settle_s=0)
        outputs.close()
        dead.close()
    summary = {
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "settings": {"users": args.users, "negatives": args.negatives, "history": args.history,
                     "rate_per_s": args.rate, "parallelism": args.parallelism, "seed": args.seed,
                     "model": f"{artifact.name}/{artifact.version}"},
        "events": len(work.events), "state_ready_s": round(state_ready_s, 1),
        "delivery": delivery(work.targets, outputs.records),
        "online": ranking_quality(work.targets, outputs.records),
        "offline_same_requests": offline_quality(args.model, work, artifact.max_len),
        "latency_ms": latency_ms(sent_at, outputs.records),
        "dead_letters": [r["value"]["error"] for r in dead.records],
    }
    print_lists(outputs.records, work, dict(artifact.titles))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=JobConfig().model_dir)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--negatives", type=int, default=100)
    p.add_argument("--history", type=int, default=200, help="most recent events sent per user")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--out", default=str(REPO_ROOT / "results" / "demo.json"))
    args = p.parse_args(argv)
    summary = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    d, on, off, lat = summary["delivery"], summary["online"], summary["offline_same_requests"], summary["latency_ms"]
    print(f"\nrequests: {d['sent']} sent, {d['answered']} answered, {d['missing']} missing, "
          f"{d['duplicated']} duplicated ({d['conflicting']} conflicting)")
    print(f"quality (held-out next movie among {args.negatives} unseen):  online NDCG@10 {on.get('ndcg@10')} "
          f"HR@10 {on.get('hr@10')} MRR {on.get('mrr')}  |  offline, same requests: NDCG@10 {off['ndcg@10']}")
    print(f"latency request->ranked list (ms): p50 {lat.get('p50')}  p95 {lat.get('p95')}  p99 {lat.get('p99')} "
          f"at {args.rate:g} req/s")
    print(f"dead letters: {len(summary['dead_letters'])} ({'; '.join(summary['dead_letters'])})")
    print(f"summary written to {args.out}")
    return 0 if d["missing"] == 0 and d["conflicting"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
