"""The cold-item protocol: how well items never seen in training are ranked, by content or not at all.

    python -m models.cold train --arm id_only $DATA --out results/tmp/cold      # one arm per process:
    python -m models.cold train --arm content $DATA --out results/tmp/cold      #   run both side by side
    python -m models.cold evaluate $DATA --out results/tmp/cold --write models/sasrec/v4

Protocol:
- a random ``--share`` (10 %) of the log's items (seeded) is held out of training entirely: every
  interaction with them is removed, so neither model has an ID row for them;
- both arms are trained on what is left with the same architecture and settings (the served model's
  unless overridden) and the same wall-clock budget: ``id_only`` (SASRec) and ``content`` (SASRec +
  projected language-model text, ``--item-embeddings``);
- a request per user: the user's last interaction with a held-out item, from the history before it
  with the held-out items left out (what a model trained without them could know); candidates are the
  true item and 99 items the user never interacted with, uniform over *all* items (warm and cold:
  a new item has to beat established ones);
- scores: ``id_only`` gives every held-out item the out-of-vocabulary score; ``content`` scores it from
  its text through the exported model's ``user_state`` and ``text_projection.npz``, the very function
  the Flink scorer calls (``udfs.content.fill_new_items``); ``popular`` counts interactions in the
  training log (0 for every held-out item). Ties count against the true item, as everywhere else.

``evaluate --write`` puts ``"cold_items": {"id_only", "content", "popular", "protocol"}`` into a
model's metrics.json (the served model's: the arms share its architecture).
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.artifact import FIRST_ITEM_INDEX, METRICS_FILE, OOV_INDEX, OUTPUT_NAME, STATE_OUTPUT, left_pad, load_artifact
from models.errors import DataError, ModelError
from models.eventlog import EventData, EventLog, add_data_args, data_from_args
from models.metrics import rank_of_target, summarize

log = logging.getLogger("models.cold")
ARMS = ("id_only", "content")
N_NEGATIVES = 99
DEFAULT_SEED = 20240601
SPLIT_FILE = "cold_split.json"
RESULT_FILE = "cold_items.json"


def choose_cold_items(log_: EventLog, share: float, seed: int) -> np.ndarray:
    """(K,) item codes (into ``log_.item_ids``) held out: ``share`` of the items that occur in the log."""
    if not 0.0 < share < 1.0:
        raise ModelError(f"share must be in (0, 1), got {share}")
    present = np.unique(log_.items)
    n = max(1, int(round(share * len(present))))
    return np.sort(np.random.default_rng(seed).choice(present, size=n, replace=False))


def without_items(log_: EventLog, codes: np.ndarray) -> EventLog:
    """The log with every interaction on the given item codes removed (users left empty are dropped)."""
    return log_._select(~np.isin(log_.items, codes))


def cold_requests(log_: EventLog, cold: np.ndarray, item_to_index: dict[str, int], event_to_index: dict[str, int]
                  ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Per user with a held-out item after at least one known item: the last such interaction.

    Returns histories (model indices, held-out items left out), their event indices, targets (item
    codes into ``log_.item_ids``) and every item code the user interacted with.
    """
    is_cold = np.zeros(len(log_.item_ids), bool)
    is_cold[cold] = True
    item_index = np.array([item_to_index.get(str(i), OOV_INDEX) for i in log_.item_ids], np.int64)
    event_index = np.array([event_to_index.get(str(e), 0) for e in log_.event_names], np.int64)
    hists, evs, targets, seen = [], [], [], []
    for u in range(log_.n_users):
        s = log_.user_slice(u)
        items, events = log_.items[s], log_.events[s]
        where = np.flatnonzero(is_cold[items])
        if not where.size:
            continue
        p = int(where[-1])
        warm = ~is_cold[items[:p]]
        if not warm.any():
            continue
        hists.append(item_index[items[:p][warm]])
        evs.append(event_index[events[:p][warm]])
        targets.append(int(items[p]))
        seen.append(np.unique(items))
    return hists, evs, np.array(targets, np.int64), seen


def sample_candidates(targets: np.ndarray, seen: list[np.ndarray], n_items: int, seed: int,
                      n: int = N_NEGATIVES) -> np.ndarray:
    """(E, 1 + n) item codes: the target, then n uniform never-interacted items (warm and cold alike)."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(targets), 1 + n), np.int64)
    every = np.arange(n_items)
    for r, (t, s) in enumerate(zip(targets, seen)):
        pool = np.setdiff1d(every, s, assume_unique=True)
        if len(pool) < n:
            raise ModelError(f"request {r}: only {len(pool)} never-seen items, cannot sample {n}")
        out[r, 0] = t
        out[r, 1:] = rng.choice(pool, size=n, replace=False)
    return out


def _train_data(data: EventData, share: float, seed: int) -> tuple[EventData, np.ndarray]:
    cold = choose_cold_items(data.log, share, seed)
    warm = replace(data, log=without_items(data.log, cold),
                   description={**data.description, "cold_items_held_out": int(len(cold)), "cold_seed": seed,
                                "cold_share": share})
    return warm, cold


def train_arm(data: EventData, arm: str, out: Path, share: float, seed: int, item_embeddings_dir: Path,
              model_kwargs: dict, train_cfg, resume: bool = False) -> Path:
    """Train one arm on the log without the held-out items; writes an artifact under ``out/<arm>``."""
    from models.item_embeddings import load_item_embeddings
    from models.train import run

    warm, cold = _train_data(data, share, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / SPLIT_FILE).write_text(json.dumps({"seed": seed, "share": share,
                                              "items": [str(data.log.item_ids[c]) for c in cold]}))
    emb = load_item_embeddings(item_embeddings_dir) if arm == "content" else None
    return run(warm, out / arm, model_kwargs, train_cfg, "cold-" + arm, arm, resume=resume, item_embeddings=emb)


def _session_scores(model_dir: Path, hists, evs, cand_idx: np.ndarray, batch: int = 256
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores (E, C) and user_state (E, D) (None for an older graph) of an artifact's model.onnx."""
    from models.export import ort_session

    art = load_artifact(model_dir)
    sess = ort_session(art.onnx_path)
    names = [o.name for o in sess.get_outputs()]
    want = [OUTPUT_NAME] + ([STATE_OUTPUT] if STATE_OUTPUT in names else [])
    scores, states = [], []
    for start in range(0, len(hists), batch):
        sl = slice(start, start + batch)
        length = max(1, min(art.max_len, max(len(h) for h in hists[sl])))
        feeds = {"hist_items": left_pad([h[-length:] for h in hists[sl]], length),
                 "hist_events": left_pad([e[-length:] for e in evs[sl]], length), "candidates": cand_idx[sl]}
        out = sess.run(want, feeds)
        scores.append(out[0])
        if len(out) > 1:
            states.append(out[1])
    return np.concatenate(scores), (np.concatenate(states) if states else None)


def evaluate(data: EventData, out: Path, item_embeddings_dir: Path) -> dict:
    """The three arms on the cold requests; needs both trained arms under ``out``."""
    from models.item_embeddings import load_item_embeddings
    from udfs.content import TextProjection, fill_new_items

    split = json.loads((out / SPLIT_FILE).read_text())
    code_of = {str(i): c for c, i in enumerate(data.log.item_ids)}
    cold = np.array(sorted(code_of[i] for i in split["items"]), np.int64)
    warm_log = without_items(data.log, cold)
    arts = {arm: load_artifact(out / arm) for arm in ARMS}
    if dict(arts["id_only"].item_to_index) != dict(arts["content"].item_to_index):
        raise ModelError("the two arms were trained on different vocabularies")
    art = arts["content"]
    hists, evs, targets, seen = cold_requests(data.log, cold, dict(art.item_to_index), dict(art.event_to_index))
    if not len(targets):
        raise ModelError("no request has a held-out true item after a known one")
    cands = sample_candidates(targets, seen, len(data.log.item_ids), split["seed"])  # (E, 100) item codes
    idx_of_code = np.array([art.item_to_index.get(str(i), OOV_INDEX) for i in data.log.item_ids], np.int64)
    cand_idx = idx_of_code[cands]  # (E, 100); held-out items -> OOV
    is_oov = cand_idx == OOV_INDEX
    emb = load_item_embeddings(item_embeddings_dir)
    rows = emb.index()
    vec_row = np.array([rows.get(str(i), -1) for i in data.log.item_ids], np.int64)
    results: dict[str, dict] = {}
    for arm in ARMS:
        scores, states = _session_scores(out / arm, hists, evs, cand_idx)
        if arm == "content":
            projection = TextProjection.load(out / arm, arts[arm].config)
            for r in range(len(targets)):
                rr = vec_row[cands[r]]
                found = rr >= 0
                vectors = np.where(found[:, None], emb.matrix[np.maximum(rr, 0)], 0.0).astype(np.float32)
                scores[r], _ = fill_new_items(scores[r], states[r], projection, is_oov[r], vectors, found)
        results[arm] = summarize(rank_of_target(scores[:, 0].astype(np.float64), scores[:, 1:].astype(np.float64)))
    counts = np.bincount(warm_log.items, minlength=len(data.log.item_ids)).astype(np.float64)
    pop = counts[cands]
    results["popular"] = summarize(rank_of_target(pop[:, 0], pop[:, 1:]))
    training = {arm: {k: arts[arm].config["training"][k] for k in ("epochs_run", "best_epoch", "train_seconds",
                                                                   "valid_best", "time_budget_min", "threads")}
                for arm in ARMS}
    results["protocol"] = {
        "held_out": f"{split['share']:.0%} of the items (seed {split['seed']}): {len(cold)} items, every "
                    "interaction with them removed from training",
        "requests": "per user, the last interaction with a held-out item, from the history before it without "
                    "held-out items; users with no known item before it are left out",
        "candidates": f"the true item + {N_NEGATIVES} never-interacted items, uniform over all items (warm and cold)",
        "scores": "id_only: held-out items get the OOV score; content: user_state @ (W t + b) from the item's "
                  "language-model embedding (udfs.content); popular: training-log counts",
        "ties": "count against the true item",
        "requests_n": int(len(targets)),
        "models": {arm: str(out / arm) for arm in ARMS},
        "training": training,
        "embeddings": emb.model,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for arm in ("id_only", "content", "popular"):
        log.info("cold items, %-8s %s", arm, results[arm])
    return results


def write_into_metrics(model_dir: Path, results: dict) -> Path:
    path = Path(model_dir) / METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["cold_items"] = results
    path.write_text(json.dumps(metrics, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("models").setLevel(logging.INFO)
    p = argparse.ArgumentParser(prog="python -m models.cold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("train", "evaluate"))
    p.add_argument("--arm", choices=ARMS, help="train: which arm")
    p.add_argument("--out", type=Path, required=True, help="directory of the split and the two arms")
    p.add_argument("--item-embeddings", type=Path, required=True, help="written by `python -m models.item_embeddings`")
    p.add_argument("--share", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--like", type=Path, default=Path("models/sasrec/v4"),
                   help="train: copy architecture and training settings from this model's config.json")
    p.add_argument("--time-budget-min", type=float, default=15.0)
    p.add_argument("--epochs", type=int, default=None,
                   help="train: at most this many epochs (default: the --like model's); with a large time budget "
                        "this makes the two arms equal in work even when they share the CPU with other jobs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--write", type=Path, default=None, help="evaluate: add cold_items to this model's metrics.json")
    add_data_args(p, train_until=False)
    args = p.parse_args(argv)
    try:
        data = data_from_args(args)
    except DataError as exc:
        log.error("%s", exc)
        return 2
    if args.command == "train":
        from models.train import TrainConfig

        if args.arm is None:
            p.error("train needs --arm")
        like = json.loads((args.like / "config.json").read_text())
        model_kwargs = {k: like[k] for k in ("max_len", "d_model", "n_heads", "n_layers", "d_ff", "dropout")}
        model_kwargs["id_dropout"] = like.get("id_dropout", 0.1) if args.arm == "content" else 0.0
        t = like["training"]
        cfg = TrainConfig(loss=t["loss"], n_negatives=t["n_negatives"], batch_size=t["batch_size"], lr=t["lr"],
                          weight_decay=t["weight_decay"], epochs=args.epochs or t["epochs"], patience=t["patience"],
                          eval_every=t["eval_every"], seed=t["seed"], threads=args.threads,
                          time_budget_min=args.time_budget_min, lr_decays=t["lr_decays"],
                          lr_decay_factor=t["lr_decay_factor"])
        train_arm(data, args.arm, args.out, args.share, args.seed, args.item_embeddings, model_kwargs, cfg,
                  resume=args.resume)
        return 0
    results = evaluate(data, args.out, args.item_embeddings)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_FILE).write_text(json.dumps(results, indent=2))
    if args.write is not None:
        log.info("wrote %s", write_into_metrics(args.write, results))
    print(json.dumps({k: v for k, v in results.items() if k != "protocol"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
