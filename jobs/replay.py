"""Stream replay with online evaluation: does real-time state beat a nightly snapshot?

    python -m jobs.replay [--requests 1000] [--speedup 200] [--model models/sasrec/cut2001]

Replays MovieLens-1M after a cut time through Kafka into the real job (see `jobs.replay_plan` for
the clock, bootstrap and request sampling), joins the served ranked lists to the requests by
`request_id`, and compares on the same requests: (a) the job with live state, (b) the same ONNX
model on each user's history frozen at the cut, (c) most-popular as of the cut. Writes
`online.json` and `online.png` under `--out`.

Without `--bootstrap-servers` it starts a local broker and the job on the local minicluster and
stops both at the end; with it, it talks to your Kafka and to a job you started with the same
topics and `--group-id`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jobs.config import REPO_ROOT, FeedbackConfig, JobConfig
from jobs.kafka_io import Producer, TopicReader, produce, wait_committed
from jobs.online_eval import delivery, feedback_metrics, latency_ms, target_rank
from jobs.replay_plan import ReplayPlan, build_plan
from models.artifact import load_artifact
from models.data import load_ml1m
from models.item_embeddings import ml1m_catalog
from models.metrics import summarize
from udfs.scoring import OnnxScorer

log = logging.getLogger("replay")
DEFAULT_MODEL = REPO_ROOT / "models" / "sasrec" / "cut2001"
DEFAULT_NEW_ITEM_MODEL = REPO_ROOT / "models" / "sasrec" / "v4"
TOPIC_ARGS = ("events_topic", "requests_topic", "output_topic", "dead_letter_topic", "model_updates_topic",
              "embeddings_topic")
DEFAULT_CUT = 978307200  # 2001-01-01T00:00:00Z: ~90% of ML-1M interactions are before it


class Sender:
    """Plays the plan's steps on the replay clock from a background thread."""

    def __init__(self, bootstrap: str, events_topic: str, requests_topic: str, plan: ReplayPlan,
                 answered: set[str], max_in_flight: int, pause_before: int | None = None) -> None:
        self.producer = Producer(bootstrap)
        self.topics = {"event": events_topic, "request": requests_topic}
        self.plan, self.answered, self.max_in_flight = plan, answered, max_in_flight
        self.request_sent_at: dict[str, int] = {}
        self.prev_event_sent_at: dict[str, int] = {}   # request_id -> when its user's last event was sent
        self._last_event_at: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="replay-sender", daemon=True)
        self.error: BaseException | None = None
        # The feedback loop's pause: before step `pause_before` the sender stops, sets `paused` and
        # waits for `resume`; the replay clock does not count the pause.
        self.pause_before = pause_before
        self.paused, self.resume = threading.Event(), threading.Event()

    def _run(self) -> None:
        try:
            start = time.monotonic()
            logged = 0
            for n, step in enumerate(self.plan.steps):
                if n == self.pause_before:
                    self.producer.flush()
                    held = time.monotonic()
                    self.paused.set()
                    self.resume.wait()
                    start += time.monotonic() - held
                if self.max_in_flight:  # closed loop: as fast as the job absorbs requests
                    while len(self.request_sent_at) - len(self.answered) >= self.max_in_flight:
                        time.sleep(0.001)
                else:
                    delay = start + step.at_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                now = int(time.time() * 1000)
                # Record timestamps strictly increase: the job answers a request with the events
                # logged at or before it, so a held-out event logged in the same millisecond as
                # its request would leak into the ranking.
                logged = max(now, logged + 1)
                # No flush per record: the producer's 2 ms linger bounds the send delay, and a
                # synchronous flush would make the sender, not the job, the bottleneck.
                self.producer.send(self.topics[step.kind], step.key, step.value, timestamp_ms=logged)
                if step.kind == "request":
                    rid = step.value["request_id"]
                    self.request_sent_at[rid] = now
                    if step.key in self._last_event_at:
                        self.prev_event_sent_at[rid] = self._last_event_at[step.key]
                else:
                    self._last_event_at[step.key] = int(time.time() * 1000)
            self.producer.flush()
        except BaseException as exc:  # surfaced by the main thread after join()
            self.error = exc
        finally:
            self.producer.close()


def score_offline(scorer: OnnxScorer, histories: list[list[dict]], candidates: list[list[str]],
                  max_len: int, batch: int = 256) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in range(0, len(histories), batch):
        h = [x[-max_len:] for x in histories[i:i + batch]]
        out += scorer.score([[e["item_id"] for e in x] for x in h], [[e["event"] for e in x] for x in h],
                            candidates[i:i + batch])
    return out


def ranks_from_scores(candidates: list[list[str]], scores: list[np.ndarray], targets: list[str]) -> np.ndarray:
    return np.array([target_rank([{"item_id": c, "score": float(s)} for c, s in zip(cs, sc)], t)
                     for cs, sc, t in zip(candidates, scores, targets)])


def request_trends(plan: ReplayPlan, data, half_life_ms: int) -> np.ndarray:
    """(R, C) decayed event counts of each request's candidates at its ts, over the whole log's
    events before it (everyone's, as the trending job would have counted them)."""
    from models.temporal import trend_at

    inter = data.interactions
    reqs = [s.value for s in plan.requests]
    ids = sorted({c for r in reqs for c in r["candidates"]} | {str(int(i)) for i in np.unique(inter.items)})
    col = {i: n for n, i in enumerate(ids)}
    item_index = np.array([col[str(int(i))] for i in inter.items], np.int64)
    columns = np.array([[col[c] for c in r["candidates"]] for r in reqs], np.int64)
    return trend_at(item_index, inter.timestamps.astype(np.int64) * 1000, len(ids),
                    np.array([r["ts"] for r in reqs], np.int64), half_life_ms, columns)


def blend_ranks(plan: ReplayPlan, model_scores: list[np.ndarray], hist: list[list[dict]], trends: np.ndarray,
                params) -> np.ndarray:
    """Ranks of the true items under the served blend (udfs/trending.py) of the model's scores on
    the given histories (one per request) and the candidates' trends at request time."""
    from udfs.trending import blend_batch

    reqs = [s.value for s in plan.requests]
    n = np.array([len(h) for h in hist])
    gap = np.array([max(0, r["ts"] - h[-1]["ts"]) if h else 0 for r, h in zip(reqs, hist)])
    blended, _, _ = blend_batch(np.stack(model_scores), trends, n, gap, params)
    return ranks_from_scores([r["candidates"] for r in reqs], list(blended),
                             [plan.targets[r["request_id"]] for r in reqs])


def evaluate(plan: ReplayPlan, outputs: list[dict], sender: Sender, scorer: OnnxScorer, max_len: int,
             bins: int, trends: np.ndarray | None = None) -> dict[str, Any]:
    reqs = [s.value for s in plan.requests]
    rids = [r["request_id"] for r in reqs]
    cands = [r["candidates"] for r in reqs]
    targets = [plan.targets[r] for r in rids]
    served: dict[str, dict] = {}
    for o in outputs:
        served.setdefault(o["value"]["request_id"], o)
    answered = [i for i, r in enumerate(rids) if r in served]

    # (a) live: what the job served; (b) frozen at the cut; (c) most popular at the cut.
    live_ranks = np.array([target_rank(served[rids[i]]["value"]["items"], targets[i]) for i in answered])
    frozen_scores = score_offline(scorer, [plan.frozen_history[r["user_id"]] for r in reqs], cands, max_len)
    frozen_ranks = ranks_from_scores(cands, frozen_scores, targets)
    pop_scores = [np.array([plan.popularity.get(c, 0) for c in cs], dtype=np.float64) for cs in cands]
    pop_ranks = ranks_from_scores(cands, pop_scores, targets)
    # The same model offline on the same requests with the histories the job should have had.
    expected_scores = score_offline(scorer, [plan.expected_history[r] for r in rids], cands, max_len)
    offline_ranks = ranks_from_scores(cands, expected_scores, targets)
    # (d) the blend with the trend, offline on the same requests and live histories (the model's blend.json).
    blend = frozen_blend = None
    if trends is not None:
        blend = blend_ranks(plan, expected_scores, [plan.expected_history[r] for r in rids], trends, scorer.blend)
        # A returning user served from a stale snapshot: what the trend adds where live state is missing.
        frozen_blend = blend_ranks(plan, frozen_scores, [plan.frozen_history[r["user_id"]] for r in reqs], trends,
                                   scorer.blend)

    fresh = [i for i in answered if served[rids[i]]["value"]["history_len"] == len(plan.expected_history[rids[i]])]
    diffs = []
    for i in fresh:
        if served[rids[i]]["value"]["model_version"] != scorer.version:
            continue  # another A/B arm's model: compared against its own arm only (live_by_arm)
        by_item = dict(zip(cands[i], expected_scores[i]))
        diffs += [abs(x["score"] - float(by_item[x["item_id"]])) for x in served[rids[i]]["value"]["items"]]
    right_after = [i for i in answered if rids[i] in sender.prev_event_sent_at
                   and sender.request_sent_at[rids[i]] - sender.prev_event_sent_at[rids[i]] <= 50]
    fresh_set = set(fresh)
    right_after_fresh = [i for i in right_after if i in fresh_set]
    fresh_ms = [served[rids[i]]["received_at"] - sender.prev_event_sent_at[rids[i]] for i in right_after_fresh]

    # Online metrics per A/B arm and the version that scored each list (one "main" arm without a split).
    by_arm: dict[str, list[int]] = {}
    for n, i in enumerate(answered):
        v = served[rids[i]]["value"]
        by_arm.setdefault(f"{v.get('arm', 'main')} ({v['model_version']})", []).append(n)
    live_by_arm = {name: summarize(live_ranks[idx]) for name, idx in sorted(by_arm.items())}
    live_ndcg, frozen_ndcg = summarize(live_ranks)["ndcg@10"], summarize(frozen_ranks[answered])["ndcg@10"]
    edges = np.linspace(0, len(rids), bins + 1).astype(int)
    pos = {i: n for n, i in enumerate(answered)}
    over_time = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = [i for i in range(lo, hi) if i in pos]
        if idx:
            over_time.append({"requests": [int(lo), int(hi)],
                              "live": summarize(live_ranks[[pos[i] for i in idx]])["ndcg@10"],
                              "frozen": summarize(frozen_ranks[idx])["ndcg@10"],
                              "popular": summarize(pop_ranks[idx])["ndcg@10"],
                              **({"blend": summarize(blend[idx])["ndcg@10"]} if blend is not None else {})})
    return {
        "delivery": delivery(rids, outputs),
        "arms": {"live": summarize(live_ranks), "frozen_at_cut": summarize(frozen_ranks[answered]),
                 "most_popular_at_cut": summarize(pop_ranks[answered]),
                 **({"live_blend_with_trend": summarize(blend[answered]),
                     "frozen_blend_with_trend": summarize(frozen_blend[answered])} if blend is not None else {})},
        "live_by_arm": live_by_arm,
        "live_vs_frozen_ndcg@10_lift": round(live_ndcg / frozen_ndcg - 1, 4) if frozen_ndcg else None,
        "offline_same_requests": summarize(offline_ranks[answered]),
        "latency_ms": latency_ms(sender.request_sent_at, outputs),
        "freshness": {
            "answers_reflecting_all_prior_events": len(fresh), "answered": len(answered),
            "requests_right_after_an_event": len(right_after),
            "of_which_reflecting_it": len(right_after_fresh),
            "event_sent_to_answer_received_ms": (
                {k: float(v) for k, v in zip(("p50", "p99"), np.percentile(fresh_ms, [50, 99]))} if fresh_ms else {}),
        },
        "parity": {"requests_compared": len(fresh), "scores_compared": len(diffs),
                   "max_abs_diff": float(max(diffs)) if diffs else None},
        "over_time": over_time,
    }


def online_feedback(samples: list[dict], outputs: list[dict], plan: ReplayPlan, window_ms: int,
                    lateness_ms: int) -> dict[str, Any]:
    """The feedback job's view of the replay: online metrics per arm and model version.

    Denominators are the served replay lists (a list whose unclicked rows are not written yet
    counts as unclicked). `clicked` = the user acted on a shown item within the window (log time).
    The true next item is always such an action, so every list with it in the top 10 must come
    back with a clicked sample for it: `true_item_in_top10` vs `of_which_labelled_clicked` checks the
    join end to end (and CTR@10 >= the live arm's HR@10).
    """
    served = {o["value"]["request_id"]: o["value"] for o in outputs if o["value"]["request_id"] in plan.targets}
    shown = {rid: (v["arm"], v["model_version"]) for rid, v in served.items()}
    mine = [s for s in samples if s["request_id"] in shown]
    clicked = {(s["request_id"], s["item_id"]) for s in mine if s["clicked"]}
    top10 = [rid for rid, v in served.items() if plan.targets[rid] in [i["item_id"] for i in v["items"][:10]]]
    return {"per_arm": feedback_metrics(mine, k=10, shown=shown), "samples": len(mine),
            "clicked_samples": len(clicked), "true_item_in_top10": len(top10),
            "of_which_labelled_clicked": sum((rid, plan.targets[rid]) in clicked for rid in top10),
            "window_ms": window_ms, "lateness_ms": lateness_ms, "impression_time": "the request's ts (log time)"}


def events_before(data, cut_ms: int, path: Path) -> Path:
    """The log's events before `cut_ms` (what the replay model was trained on) as a Parquet file
    in the user-events contract, for the retraining step."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from models.data import event_columns

    table = pa.table(event_columns(data))
    pq.write_table(table.filter(pc.less(table["ts"], cut_ms)), path)
    return path


def loop_report(loop: dict[str, Any], plan: ReplayPlan, outputs: list[dict], before: OnnxScorer,
                max_len: int) -> dict[str, Any]:
    """The feedback loop's before/after: on the requests after the swap, online per A/B arm (what
    each version served, by the ranked lists) and offline paired (both versions on every one of
    those requests, with the histories the job had): the second has twice the requests and no
    arm-assignment noise."""
    reqs = [s.value for s in plan.requests][loop["at_request"]:]
    rids = [r["request_id"] for r in reqs]
    served = {}
    for o in outputs:
        served.setdefault(o["value"]["request_id"], o["value"])
    targets = [plan.targets[r] for r in rids]
    online: dict[str, list[int]] = {}
    for rid, target in zip(rids, targets):
        if rid in served:
            v = served[rid]
            online.setdefault(f"{v['arm']} ({v['model_version']})", []).append(target_rank(v["items"], target))
    cands = [r["candidates"] for r in reqs]
    histories = [plan.expected_history[r] for r in rids]
    scorers = {loop["before"]: before}
    for name, where in (("after", "artifact_dir"), ("control", "control_dir")):
        if loop.get(where):
            scorers[loop[name]] = OnnxScorer(str(loop[where]), ["CPUExecutionProvider"])
    paired = {name: summarize(ranks_from_scores(cands, score_offline(s, histories, cands, max_len), targets))
              for name, s in scorers.items()}
    return {**{k: v for k, v in loop.items() if not k.endswith("_dir")}, "requests_after_swap": len(rids),
            "online_by_arm": {k: summarize(np.array(v)) for k, v in sorted(online.items())},
            "offline_paired": paired}


def plot(result: dict[str, Any], latencies: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loop = result.get("loop")
    fig, axes = plt.subplots(1, 3 if loop else 2, figsize=(18 if loop else 12, 4.5))
    a, b = axes[0], axes[1]
    x = [(t["requests"][0] + t["requests"][1]) / 2 for t in result["over_time"]]
    for arm, style in (("live", "-o"), ("frozen", "-s"), ("popular", "-^"), ("blend", "-d")):
        if all(arm in t for t in result["over_time"]):
            a.plot(x, [t[arm] for t in result["over_time"]], style, label=arm)
    if "loop" in result:
        a.axvline(result["loop"]["at_request"], color="grey", ls="--")
        a.text(result["loop"]["at_request"], a.get_ylim()[1], " retrain + swap", va="top", fontsize=8)
    a.set_xlabel("request # in replay order")
    a.set_ylabel("NDCG@10 (true next item among 101)")
    a.set_title("Online quality over replay time")
    a.legend()
    a.grid(alpha=0.3)
    b.hist(latencies, bins=40)
    lat = result["latency_ms"]
    b.set_title(f"Latency request→ranked list: p50 {lat.get('p50', 0):.0f} ms, p99 {lat.get('p99', 0):.0f} ms")
    b.set_xlabel("ms")
    b.set_ylabel("requests")
    if loop:
        # After the swap: what each A/B arm served (online), and every version on the same requests.
        bars = [(f"online\n{k}", m["ndcg@10"], m["users"]) for k, m in loop["online_by_arm"].items()]
        bars += [(f"paired\n{k}", m["ndcg@10"], m["users"]) for k, m in loop["offline_paired"].items()]
        c = axes[2]
        c.bar(range(len(bars)), [v for _, v, _ in bars], color=["C0"] * len(loop["online_by_arm"]) +
              ["C1"] * len(loop["offline_paired"]))
        for i, (_, v, n) in enumerate(bars):
            c.text(i, v, f"{v:.3f}\nn={n}", ha="center", va="bottom", fontsize=7)
        c.set_xticks(range(len(bars)), [label for label, _, _ in bars], fontsize=6, rotation=20)
        c.set_ylabel("NDCG@10 after the swap")
        c.set_title(f"Feedback loop: retrained after request {loop['at_request']}")
        c.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def announce_split(bootstrap: str, topic: str, spec: str, stack: ExitStack) -> dict:
    """Publish the model directories of `spec` (ARM=MODEL_DIR:SHARE,...) to a temporary registry and
    announce them as A/B arms; returns the announcement."""
    import tempfile

    from jobs.retrain_loop import announce_arms
    from models.registry import Registry

    registry = Registry(stack.enter_context(tempfile.TemporaryDirectory()))
    arms = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        arm, rest = part.split("=", 1)
        model_dir, share = rest.rsplit(":", 1)
        arms[arm] = (model_dir, float(share))
    return announce_arms(bootstrap, topic, registry, arms, salt="replay")


def run(args: argparse.Namespace) -> dict[str, Any]:
    artifact = load_artifact(args.model)
    data = load_ml1m()
    plan = build_plan(data.interactions, len(data.items.titles), args.cut, args.requests, args.negatives,
                      max(args.bootstrap_len, artifact.max_len), args.speedup, args.max_gap_s, args.seed)
    log.info("plan: %d bootstrap events, %d replay steps (%d requests), replay clock %.0f s",
             len(plan.bootstrap), len(plan.steps), len(plan.requests), plan.duration_s)
    run_id = uuid.uuid4().hex[:6]
    local = args.bootstrap_servers is None
    topics = {k: (f"{getattr(args, k)}-{run_id}" if local else getattr(args, k))
              for k in TOPIC_ARGS}
    group_id = f"replay-{run_id}" if local else args.group_id
    show_new = local and args.new_item_model != "none"
    if show_new:
        from jobs import new_item_demo

        demo_topics = new_item_demo.DemoTopics(
            requests=topics["requests_topic"], output=topics["output_topic"],
            model_updates=topics["model_updates_topic"], catalog=f"item-catalog-{run_id}",
            embeddings=topics["embeddings_topic"], dead_letters=topics["dead_letter_topic"])
    with ExitStack() as stack:
        if local:
            from jobs.local_broker import LocalBroker
            from jobs.rerank_job import running

            broker = stack.enter_context(LocalBroker())
            bootstrap = broker.bootstrap_servers
            broker.create_topics([t for k, t in topics.items() if k not in ("model_updates_topic", "embeddings_topic")],
                                 partitions=2)
            broker.create_topics([topics["model_updates_topic"]], partitions=1)
            if show_new:
                from jobs.item_embed_job import create_item_topics

                embed_cfg = new_item_demo.embed_config(bootstrap, demo_topics, run_id)
                create_item_topics(bootstrap, embed_cfg)
            else:
                broker.create_topics([topics["embeddings_topic"]], partitions=1)
            cfg = JobConfig(bootstrap_servers=bootstrap, group_id=group_id, model_dir=str(args.model),
                            parallelism=args.parallelism, checkpoint_interval_ms=1000, job_name="rerank-replay",
                            request_hold_ms=args.request_hold_ms, flink_conf=args.flink_conf, **topics)
            stack.enter_context(running(cfg))
            if args.feedback:
                from jobs.feedback_job import running as feedback_running

                samples_topic = f"training-samples-{run_id}"
                broker.create_topics([samples_topic], partitions=2)
                # Impression time = the request's ts: the replay's events and requests carry the log's
                # own (historical) time, and the join must compare the two on one clock.
                stack.enter_context(feedback_running(FeedbackConfig(
                    bootstrap_servers=bootstrap, events_topic=topics["events_topic"],
                    output_topic=topics["output_topic"], samples_topic=samples_topic,
                    group_id=f"replay-feedback-{run_id}", job_name="feedback-replay", feedback_time="ts",
                    feedback_window_ms=args.feedback_window_ms, feedback_lateness_ms=args.feedback_lateness_ms,
                    checkpoint_interval_ms=1000,
                    flink_conf=args.flink_conf)))
        else:
            bootstrap = args.bootstrap_servers
        if args.ab:
            announce_split(bootstrap, topics["model_updates_topic"], args.ab, stack)
        t0 = time.monotonic()
        ends = produce(bootstrap, topics["events_topic"], plan.bootstrap)
        wait_committed(bootstrap, group_id, topics["events_topic"], ends, args.timeout)
        bootstrap_s = time.monotonic() - t0
        log.info("state bootstrapped with %d events in %.1f s", len(plan.bootstrap), bootstrap_s)

        outputs = TopicReader(bootstrap, topics["output_topic"])
        answered: set[str] = set()
        request_steps = [n for n, step in enumerate(plan.steps) if step.kind == "request"]
        retrain_at = int(args.retrain_at * len(request_steps)) if local and args.retrain_at > 0 else None
        sender = Sender(bootstrap, topics["events_topic"], topics["requests_topic"], plan, answered,
                        args.max_in_flight if args.speedup == 0 else 0,
                        pause_before=None if retrain_at is None else request_steps[retrain_at])
        t1 = time.monotonic()
        replay_started_ms = int(time.time() * 1000)
        sender.thread.start()
        wanted = set(plan.targets)
        deadline = time.monotonic() + plan.duration_s + args.timeout
        loop = None
        while time.monotonic() < deadline and not wanted <= answered:
            answered.update(o["value"]["request_id"] for o in outputs.poll())
            if sender.error:
                raise sender.error
            if loop is None and sender.paused.is_set() and set(sender.request_sent_at) <= answered:
                # Everything served so far has been answered: retrain on it, publish, swap half the users.
                import tempfile

                from jobs.retrain_loop import RetrainSettings, retrain_and_announce

                held = time.monotonic()
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                # The serving model's own training data (the log before the cut) + what the replay
                # sent through the events topic since it started: no event twice.
                loop = retrain_and_announce(
                    bootstrap, topics["events_topic"], topics["model_updates_topic"], Path(args.model), workdir,
                    f"{artifact.version}-retrained", RetrainSettings(epochs=args.retrain_epochs, threads=2),
                    [events_before(data, args.cut * 1000, workdir / "before_cut.parquet")], replay_started_ms,
                    control=args.retrain_control)
                loop["at_request"] = retrain_at
                loop["new_events"] = sum(step.kind == "event" for step in plan.steps[:request_steps[retrain_at]])
                deadline += time.monotonic() - held
                sender.resume.set()
        outputs.read_until(lambda rs: True, timeout_s=2.0, settle_s=1.0)  # late duplicates
        sender.thread.join(timeout=30)
        replay_s = time.monotonic() - t1
        outputs.close()
        if loop is not None:  # while the retrained artifact's directory still exists
            loop = loop_report(loop, plan, outputs.records, OnnxScorer(str(args.model), ["CPUExecutionProvider"]),
                               artifact.max_len)
        samples = None
        if local and args.feedback:
            # Clicked rows are written as soon as the action arrives; give the join a few quiet seconds.
            reader = TopicReader(bootstrap, samples_topic)
            samples = [r["value"] for r in reader.read_until(lambda rs: bool(rs), timeout_s=30, settle_s=5)]
            reader.close()
        new_item = None
        if show_new:  # after the replay's requests: the swap and the new item do not touch its metrics
            last = plan.requests[-1].value
            history = [e["item_id"] for e in plan.expected_history[last["request_id"]]]
            history.append(plan.targets[last["request_id"]])  # sent right after the request
            new_item = new_item_demo.show_new_item(
                bootstrap, demo_topics, args.new_item_model, ml1m_catalog(data.items), last["user_id"], history,
                stack, embed_cfg, seed=args.seed, timeout_s=args.timeout)
    scorer = OnnxScorer(str(args.model), ["CPUExecutionProvider"])
    trends = request_trends(plan, data, scorer.blend.half_life_ms) if scorer.blend is not None else None
    result = evaluate(plan, outputs.records, sender, scorer, artifact.max_len, args.bins, trends)
    if loop is not None:
        result["loop"] = loop
    if samples is not None:
        result["feedback"] = online_feedback(samples, outputs.records, plan, args.feedback_window_ms,
                                             args.feedback_lateness_ms)
    if new_item is not None:
        result["new_item"] = new_item
    result["run"] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": f"{artifact.name}/{artifact.version}", "trained_on": artifact.config.get("trained_on"),
        "cut": args.cut, "requests": len(plan.requests), "negatives": args.negatives,
        "replay_events": sum(s.kind == "event" for s in plan.steps), "bootstrap_events": len(plan.bootstrap),
        "speedup": args.speedup, "max_gap_s": args.max_gap_s, "max_in_flight": args.max_in_flight,
        "parallelism": args.parallelism, "request_hold_ms": args.request_hold_ms,
        "flink_conf": args.flink_conf, "seed": args.seed, "bootstrap_s": round(bootstrap_s, 1),
        "replay_s": round(replay_s, 1), "local": local, "retrain_at": args.retrain_at,
    }
    lat = [served["received_at"] - sender.request_sent_at[served["value"]["request_id"]]
           for served in {o["value"]["request_id"]: o for o in reversed(outputs.records)}.values()
           if served["value"]["request_id"] in sender.request_sent_at]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "online.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, lat, out / "online.png")
    return result


def print_table(result: dict[str, Any], out: Path) -> None:
    d, arms, f = result["delivery"], result["arms"], result["freshness"]
    print(f"\n{'arm':<22}{'NDCG@10':>9}{'HR@10':>8}{'MRR':>8}{'requests':>10}")
    for name, m in arms.items():
        print(f"{name:<22}{m['ndcg@10']:>9.4f}{m['hr@10']:>8.4f}{m['mrr']:>8.4f}{m['users']:>10}")
    if len(result.get("live_by_arm", {})) > 1:
        for name, m in result["live_by_arm"].items():
            print(f"{'  live, ' + name:<22}{m['ndcg@10']:>9.4f}{m['hr@10']:>8.4f}{m['mrr']:>8.4f}{m['users']:>10}")
    off = result["offline_same_requests"]
    print(f"{'offline, same requests':<22}{off['ndcg@10']:>9.4f}{off['hr@10']:>8.4f}{off['mrr']:>8.4f}{off['users']:>10}")
    print(f"\nlive vs frozen NDCG@10 lift: {100 * (result['live_vs_frozen_ndcg@10_lift'] or 0):+.1f}%")
    print(f"requests: {d['sent']} sent, {d['answered']} answered, {d['missing']} missing, "
          f"{d['duplicated']} duplicated ({d['conflicting']} conflicting)")
    lat = result["latency_ms"]
    print(f"latency request->ranked list: p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms")
    print(f"freshness: {f['answers_reflecting_all_prior_events']}/{f['answered']} answers reflect every prior event; "
          f"requests right after an event: {f['of_which_reflecting_it']}/{f['requests_right_after_an_event']} "
          f"reflect it, event->answer {f['event_sent_to_answer_received_ms']}")
    print(f"parity: max |served - offline| = {result['parity']['max_abs_diff']} over "
          f"{result['parity']['scores_compared']} scores")
    print(f"\nwrote {out / 'online.json'} and plot {out / 'online.png'}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = JobConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="trained only before --cut (no leakage)")
    p.add_argument("--cut", type=int, default=DEFAULT_CUT, help="epoch seconds")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--negatives", type=int, default=100)
    p.add_argument("--bootstrap-len", type=int, default=200, help="pre-cut events per user replayed first")
    p.add_argument("--speedup", type=float, default=200.0, help="replay clock factor; 0 = as fast as absorbed")
    p.add_argument("--max-gap-s", type=float, default=60.0, help="cap on a gap between interactions")
    p.add_argument("--max-in-flight", type=int, default=20, help="open requests when --speedup 0")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--ab", default=None, metavar="ARM=MODEL_DIR:SHARE,...",
                   help="serve an A/B split during the replay (published to a temporary registry and announced on "
                        "--model-updates-topic); online metrics are reported per arm")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--request-hold-ms", type=int, default=defaults.request_hold_ms, help="job setting (local)")
    p.add_argument("--flink-conf", default=defaults.flink_conf, help="job's Flink config file (local)")
    p.add_argument("--bootstrap-servers", default=None, help="use this Kafka and a running job (else: local)")
    p.add_argument("--group-id", default=defaults.group_id, help="the running job's group (with --bootstrap-servers)")
    p.add_argument("--feedback", type=int, choices=(0, 1), default=1,
                   help="1 (local only): run the feedback job beside the ranking job and report online metrics")
    p.add_argument("--feedback-window-ms", type=int, default=FeedbackConfig().feedback_window_ms,
                   help="an action on a shown item within this long (log time) after the request is a click")
    p.add_argument("--feedback-lateness-ms", type=int, default=6 * 3600 * 1000,
                   help="disorder allowed in log time: the replay compresses hours of log time into "
                        "milliseconds, so lists answered out of order are hours apart in log time")
    p.add_argument("--retrain-at", type=float, default=0.5,
                   help="(local only) the feedback loop: after this fraction of the requests, pause, retrain the "
                        "model on the events topic (warm start), publish it and A/B it against the serving one for "
                        "the rest; 0 skips it")
    p.add_argument("--retrain-epochs", type=int, default=1)
    p.add_argument("--retrain-control", action=argparse.BooleanOptionalAction, default=True,
                   help="also fine-tune the serving model on its own log alone (same epochs, not served): what "
                        "the extra epoch gains without the newer data, in the offline paired comparison")
    p.add_argument("--new-item-model", default=str(DEFAULT_NEW_ITEM_MODEL),
                   help="after the replay (local only): swap to this content-aware model, embed the catalog in "
                        "the item-embedding job and show a brand-new item ranked by its text; 'none' skips it")
    for name in TOPIC_ARGS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=getattr(defaults, name))
    p.add_argument("--out", default=str(REPO_ROOT / "results" / "replay"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    args = parse_args(argv)
    result = run(args)
    print_table(result, Path(args.out))
    if "feedback" in result:
        fb = result["feedback"]
        print(f"\nonline feedback (feedback job: lists joined with the users' later events, "
              f"{fb['window_ms'] // 60000} min window in log time; {fb['samples']} samples):")
        for group, m in fb["per_arm"].items():
            print(f"  {group:<28} lists {m['lists']:>5}  CTR@10 {m['ctr@10']:.4f}  NDCG@10 of clicks {m['ndcg@10']:.4f}")
        print(f"  join check: {fb['of_which_labelled_clicked']}/{fb['true_item_in_top10']} lists with the true next "
              f"item in the top 10 came back with it labelled clicked")
    if "loop" in result:
        lp = result["loop"]
        print(f"\nfeedback loop: after request {lp['at_request']}, retrained {lp['after']} from {lp['before']} on "
              f"{lp['trained_on'].get('interactions')} events (its training log + {lp['new_events']} from the events "
              f"topic since the replay started) in {lp['train_s']} s ({lp['epochs_run']} epochs), published, "
              f"A/B {lp['settings']['new_share']:.0%} -> new:")
        for name, m in lp["online_by_arm"].items():
            print(f"  online, {name:<34} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}  requests {m['users']}")
        if "control" in lp:
            print(f"  control {lp['control']}: the same fine-tune on its training log alone "
                  f"({lp['control_trained_on'].get('interactions')} events, {lp['control_train_s']} s), not served")
        for name, m in lp["offline_paired"].items():
            print(f"  paired, {name:<34} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}  requests {m['users']}")
    if "new_item" in result:
        from jobs.new_item_demo import print_new_item

        print_new_item(result["new_item"])
    d = result["delivery"]
    return 0 if d["missing"] == 0 and d["conflicting"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
