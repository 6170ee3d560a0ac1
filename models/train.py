"""Train a SASRec-style model on an interaction log and write a versioned artifact.

    python -m models.train --events examples/events.jsonl --catalog examples/catalog.jsonl --out models/mine/v1
    python -m models.train --events results/tmp/ml-1m-events/events.parquet --dataset-name ml-1m --out models/sasrec/v2
    python -m models.train ... --item-embeddings data/item-embeddings/ml-1m --out models/sasrec-text/v1   # content-aware

Input: the `user-events` contract (files or the topic read back; see ``models.eventlog``).
Fixed seeds, a checkpoint every epoch under ``<out>/checkpoints/`` (git-ignored;
``--resume`` continues from it), early stopping on validation NDCG@10 (full
ranking, history excluded), a wall-clock budget, then ONNX export behind the
parity gate, ``vocab.json``, ``config.json`` and (unless ``--no-eval``)
``metrics.json`` via ``models.evaluate``, and ``curves.png`` (loss and validation per epoch).
A progress bar runs over epochs and batches; each evaluation logs one summary line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.artifact import (CONFIG_FILE, FIRST_ITEM_INDEX, MODEL_FILE, PAD_INDEX, TEXT_PROJECTION_FILE, VOCAB_FILE,
                             left_pad, load_artifact)
from models.eventlog import EventData, add_data_args, data_from_args, parse_time_ms
from models.errors import DataError, ModelError
from models.export import ONNX_OPSET, PARITY_ATOL, check_parity, export_onnx
from models.metrics import summarize
from models.protocols import Scorer, make_task, ranks_full
from models.sasrec import SASRec, SASRecConfig
from models.split import LEAVE_ONE_OUT, TEST_SPLITS, TIME_SPLIT, Split, build_vocab, leave_one_out

log = logging.getLogger("models.train")  # not __name__: it is "__main__" under -m

LOSSES = ("ce-sampled", "ce-full", "bce")
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (CLI flag in brackets; defaults are the full-run settings).

    loss:            ce-full (softmax over all items), ce-sampled (over shared uniform
                     negatives) or bce (one negative, original SASRec) [--loss, ce-full]
    n_negatives:     shared negatives per batch for ce-sampled [--n-negatives, 256]
    batch_size:      users per batch [--batch-size, 128]
    lr:              AdamW learning rate [--lr, 2e-3]
    weight_decay:    AdamW decoupled weight decay [--weight-decay, 0.0]
    epochs:          maximum epochs [--epochs, 200]
    patience:        evaluations without validation improvement before stopping [--patience, 5]
    eval_every:      epochs between validation runs [--eval-every, 2]
    seed:            seed for torch and numpy [--seed, 42]
    threads:         torch CPU threads [--threads, 1]
    time_budget_min: stop starting epochs after this many minutes of training [--time-budget-min, 80]
    lr_decays:       when patience runs out, restart from the best weights with lr *= lr_decay_factor,
                     this many times before stopping (0 = plain early stopping) [--lr-decays, 1]
    lr_decay_factor: learning-rate multiplier per decay [--lr-decay-factor, 0.25]
    train_until_ms:  only events with ts strictly before this epoch millisecond [--train-until]
    """

    loss: str = "ce-full"
    n_negatives: int = 256
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    epochs: int = 200
    patience: int = 5
    eval_every: int = 2
    seed: int = 42
    threads: int = 1
    time_budget_min: float = 80.0
    lr_decays: int = 1
    lr_decay_factor: float = 0.25
    train_until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ModelError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.batch_size < 1 or self.epochs < 0 or self.patience < 1 or self.eval_every < 1:
            raise ModelError(f"batch_size, patience, eval_every must be >= 1 and epochs >= 0: {self}")


@dataclass
class TrainState:
    """Everything a resumed run needs beyond weights and optimizer."""

    epoch: int = 0
    best_ndcg: float = -1.0
    best_epoch: int = 0
    bad_evals: int = 0
    lr_decays: int = 0
    elapsed_s: float = 0.0
    history: list = field(default_factory=list)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def training_rows(split: Split, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Next-item training pairs per user, left-padded to ``max_len``.

    Returns inputs (U, L), input events (U, L), targets (U, L) and lengths (U,):
    targets[t] is the item after inputs[t]; padding (0) in targets means "no loss".
    """
    users = [u for u, s in enumerate(split.train) if len(s) >= 2]
    inputs = left_pad([split.train[u][:-1] for u in users], max_len)
    events = left_pad([split.train_events[u][:-1] for u in users], max_len)
    targets = left_pad([split.train[u][1:] for u in users], max_len)
    lengths = (targets != PAD_INDEX).sum(axis=1)
    return inputs, events, targets, lengths


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of users with similar lengths, in random order.

    Padding to the batch's longest sequence instead of max_len roughly halves
    the work on ML-1M (median length 96 vs L=200); jitter keeps batches varied.
    """
    order = np.argsort(lengths + rng.uniform(0, 0.5 * lengths.std() + 1, size=len(lengths)), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_loss(model: SASRec, cfg: TrainConfig, inp: torch.Tensor, ev: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Mean next-item loss over the non-padding positions of a batch.

    inp, ev, tgt: (B, L) int64.
    """
    emb = model.item_table()  # (I, D); one ID-dropout draw shared by inputs and outputs of this batch
    h = model.encode(inp, ev, emb)  # (B, L, D)
    mask = tgt != PAD_INDEX
    hv, pos = h[mask], tgt[mask]  # (N, D), (N,)
    n_items = emb.shape[0]
    if cfg.loss == "ce-full":
        logits = hv @ emb[FIRST_ITEM_INDEX:].T  # (N, I - 2): every known item
        return F.cross_entropy(logits, pos - FIRST_ITEM_INDEX)
    if cfg.loss == "ce-sampled":
        neg = torch.randint(FIRST_ITEM_INDEX, n_items, (cfg.n_negatives,))  # (K,) shared by the batch
        pos_logit = (hv * emb[pos]).sum(-1, keepdim=True)  # (N, 1)
        neg_logit = hv @ emb[neg].T  # (N, K)
        # A sampled "negative" equal to the positive would push the positive down against itself.
        neg_logit = neg_logit.masked_fill(neg[None, :] == pos[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # (N, 1 + K)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))
    neg = torch.randint(FIRST_ITEM_INDEX, n_items, pos.shape)  # (N,) one negative per position (original SASRec)
    pos_logit = (hv * emb[pos]).sum(-1)
    neg_logit = (hv * emb[neg]).sum(-1)
    return F.binary_cross_entropy_with_logits(
        torch.cat([pos_logit, neg_logit]), torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)])
    )


def full_catalogue_scorer(model: SASRec) -> Scorer:
    """Same dot products as ``model.score``, computed as h @ E.T then gathered.

    Scoring all items through ``score`` materialises (B, I, D) candidate
    embeddings; one matrix product is ~3x faster for validation.
    """

    def score(items: np.ndarray, events: np.ndarray, cands: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            table = model.item_table()
            h = model.encode(torch.from_numpy(items), torch.from_numpy(events), table)[:, -1, :]  # (B, D)
            every = h @ table.T  # (B, I)
            return torch.take_along_dim(every, torch.from_numpy(cands), dim=1).numpy()  # (B, C)

    return score


def validate(model: SASRec, split: Split) -> dict:
    """Validation metrics: full ranking of seq[-2] given seq[:-2], history excluded."""
    model.eval()
    ranks = ranks_full(full_catalogue_scorer(model), make_task(split, "valid"), model.cfg.max_len)
    model.train()
    return summarize(ranks)


def _save_checkpoint(path: Path, model: SASRec, opt: torch.optim.Optimizer, state: TrainState,
                     rng: np.random.Generator, train_cfg: TrainConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(), "optim": opt.state_dict(), "state": asdict(state),
        "model_config": model.cfg.to_dict(), "train_config": asdict(train_cfg),
        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
    }, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never corrupts the last good checkpoint


def train(model: SASRec, split: Split, cfg: TrainConfig, ckpt_dir: Path, resume: bool = False,
          progress: bool = True) -> tuple[SASRec, TrainState]:
    """Train with early stopping; returns the best model (by validation NDCG@10) and the final state."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    rng = seed_everything(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    state = TrainState()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last, best = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if resume and last.is_file():
        ck = torch.load(last, weights_only=False)
        if ck["model_config"] != model.cfg.to_dict():
            raise ModelError(f"{last}: checkpoint model config {ck['model_config']} != requested {model.cfg.to_dict()}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        state = TrainState(**ck["state"])
        rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at epoch %d (best ndcg@10 %.4f)", last, state.epoch, state.best_ndcg)
    inputs, events, targets, lengths = (torch.from_numpy(a) for a in training_rows(split, model.cfg.max_len))
    budget_s = cfg.time_budget_min * 60
    model.train()
    interval = 1.0 if sys.stderr.isatty() else 30.0
    epochs_bar = tqdm(total=cfg.epochs, initial=state.epoch, desc="epochs", unit="epoch", disable=not progress,
                      mininterval=interval)
    while state.epoch < cfg.epochs and state.elapsed_s < budget_s:
        if state.bad_evals >= cfg.patience:
            if state.lr_decays >= cfg.lr_decays or not best.is_file():
                break
            # Validation plateaued at this lr: continue from the best weights with a smaller step.
            state.lr_decays, state.bad_evals = state.lr_decays + 1, 0
            model.load_state_dict(torch.load(best, weights_only=False)["model"])
            for group in opt.param_groups:
                group["lr"] *= cfg.lr_decay_factor
            log.info("plateau: lr -> %.3g, restarting from epoch %d weights", opt.param_groups[0]["lr"], state.best_epoch)
        t0 = time.monotonic()
        total, n = 0.0, 0
        batches = length_bucketed_batches(lengths.numpy(), cfg.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {state.epoch + 1}", disable=not progress, leave=False,
                   mininterval=interval, unit="batch")
        for idx in bar:
            idx_t = torch.from_numpy(idx)
            width = int(lengths[idx_t].max())  # trim the all-padding left columns of this batch
            loss = batch_loss(model, cfg, inputs[idx_t, -width:], events[idx_t, -width:], targets[idx_t, -width:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
        state.epoch += 1
        record = {"epoch": state.epoch, "loss": round(total / max(n, 1), 5), "lr": opt.param_groups[0]["lr"]}
        if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
            val = validate(model, split)
            record["valid"] = val
            if val["ndcg@10"] > state.best_ndcg:
                state.best_ndcg, state.best_epoch, state.bad_evals = val["ndcg@10"], state.epoch, 0
                torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict()}, best)
            else:
                state.bad_evals += 1
        state.elapsed_s += time.monotonic() - t0
        record["elapsed_s"] = round(state.elapsed_s, 1)
        state.history.append(record)
        if "valid" in record:
            log.info(summary_line(record, state))
        epochs_bar.update(1)
        epochs_bar.set_postfix(loss=record["loss"], best=f"{state.best_ndcg:.4f}", refresh=False)
        _save_checkpoint(last, model, opt, state, rng, cfg)
    epochs_bar.close()
    if best.is_file():
        model.load_state_dict(torch.load(best, weights_only=False)["model"])
    model.eval()
    return model, state


def summary_line(record: dict, state: TrainState) -> str:
    """One line per evaluation: epoch, loss, validation metrics, best so far, time."""
    v = record["valid"]
    return (f"epoch {record['epoch']}: loss {record['loss']:.4f} | valid ndcg@10 {v['ndcg@10']:.4f} "
            f"hr@10 {v['hr@10']:.4f} mrr {v['mrr']:.4f} | best {state.best_ndcg:.4f} @ {state.best_epoch} "
            f"| lr {record['lr']:.3g} | {record['elapsed_s']:.0f} s")


def plot_curves(history: list[dict], path: Path) -> Path | None:
    """``curves.png``: training loss per epoch and validation NDCG@10 / HR@10 per evaluation."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on a training box
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker=".")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    evals = [h for h in history if "valid" in h]
    for key in ("ndcg@10", "hr@10"):
        b.plot([h["epoch"] for h in evals], [h["valid"][key] for h in evals], marker="o", label=key)
    b.set_xlabel("epoch")
    b.set_ylabel("validation (full ranking)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def item_text_matrix(item_to_index: dict[str, int], n_items: int, embeddings) -> tuple[np.ndarray, int]:
    """(n_items, T) float32 rows of ``embeddings`` (``models.item_embeddings.ItemEmbeddings``) in vocabulary
    order, and how many vocabulary items have no embedding (their row stays zero: ID only)."""
    rows = embeddings.index()
    matrix = np.zeros((n_items, embeddings.matrix.shape[1]), np.float32)
    missing = 0
    for ext, idx in item_to_index.items():
        r = rows.get(ext)
        if r is None:
            missing += 1
        else:
            matrix[idx] = embeddings.matrix[r]
    return matrix, missing


def write_artifact(model: SASRec, vocab: dict, out: Path, name: str, version: str, trained_on: dict,
                   extra: dict, real_inputs: list[tuple[np.ndarray, ...]] = (), parity_atol: float = PARITY_ATOL) -> Path:
    """Export model.onnx (behind the parity gate), vocab.json, config.json and, for a content-aware
    model, text_projection.npz into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, out / MODEL_FILE)
    # Eager (unfolded for a content-aware model) against the exported graph: this also checks the fold.
    parity = check_parity(model, onnx_path, real_inputs, atol=parity_atol)
    (out / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    if model.cfg.text_dim:
        weight, bias = model.text_projection()
        np.savez(out / TEXT_PROJECTION_FILE, weight=weight, bias=bias)
    config = {
        **model.cfg.to_dict(),
        "name": name, "version": version, "max_len": model.cfg.max_len, "n_items": model.cfg.n_items,
        "onnx_opset": ONNX_OPSET, "trained_on": trained_on,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"hist_items": "(B, L) int64", "hist_events": "(B, L) int64", "candidates": "(B, C) int64"},
        "outputs": {"scores": "(B, C) float32", "user_state": "(B, D) float32"},
        "onnx_parity_max_abs_diff": parity, **extra,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    load_artifact(out)  # fail here, not in the Flink job, if anything is inconsistent
    return out


def real_parity_inputs(split: Split, max_len: int, n: int = 64) -> list[tuple[np.ndarray, ...]]:
    """Validation histories as (items, events, candidates) for the parity gate on real data."""
    task = make_task(split, "valid")
    k = min(n, len(task.targets))
    items = left_pad(task.histories[:k], max_len)
    events = left_pad(task.events[:k], max_len)
    cands = np.stack([np.roll(np.arange(FIRST_ITEM_INDEX, split.n_items), -i)[:101] for i in range(k)])
    cands[:, 0] = task.targets[:k]
    return [(items, events, cands)]


def run(data: EventData, out: Path, model_cfg_kwargs: dict, cfg: TrainConfig, name: str, version: str,
        resume: bool = False, progress: bool = True, parity_atol: float = PARITY_ATOL,
        item_embeddings=None, init_from: Path | None = None) -> Path:
    """Event data -> trained model -> artifact directory with curves.png (without metrics.json).

    Re-running with ``resume=True`` after a finished run skips training (its
    stopping condition still holds) and only re-exports the best checkpoint. ``init_from``: a
    published ID-only artifact to start from (models/warm_start.py); its architecture wins over
    ``model_cfg_kwargs``.
    """
    if data.description.get("train_until_ms") != cfg.train_until_ms:
        raise ModelError(f"data cut {data.description.get('train_until_ms')} != train_until_ms {cfg.train_until_ms}")
    vocab = build_vocab(data.log, data.catalog)
    if init_from is not None:
        # Retraining on a window of newer data must not forget the catalog: items the source model
        # knows keep a row (its trained one, models/warm_start.py) even if the window lacks them.
        known = load_artifact(init_from).item_to_index
        extra = sorted(set(known) - set(vocab["items"]), key=known.get)
        base = max(vocab["items"].values(), default=FIRST_ITEM_INDEX - 1) + 1
        vocab["items"].update({item: base + i for i, item in enumerate(extra)})
    split = leave_one_out(data.log, vocab["items"], vocab["events"])
    if not split.eval_users.size:
        raise ModelError("no user has 3 or more events: nothing to validate or test on (leave-one-out)")
    text_kwargs, text_matrix, text_meta = {}, None, {}
    if item_embeddings is not None:
        text_matrix, missing = item_text_matrix(vocab["items"], split.n_items, item_embeddings)
        if missing == len(vocab["items"]):
            raise ModelError("no item of the log has an item embedding: are the ids the same as the catalog's?")
        log.info("item text: %d of %d items embedded by %s (the rest are ID only)",
                 len(vocab["items"]) - missing, len(vocab["items"]), item_embeddings.model)
        text_kwargs = {"text_dim": int(text_matrix.shape[1])}
    else:
        model_cfg_kwargs = {**model_cfg_kwargs, "id_dropout": 0.0}
    source = None
    if init_from is not None:
        from models.warm_start import architecture, model_from_artifact

        if item_embeddings is not None:
            raise ModelError("--init-from reads ID-only artifacts; leave out --item-embeddings")
        source = model_from_artifact(init_from)
        model_cfg_kwargs = {**model_cfg_kwargs, **architecture(init_from)}
    model_cfg = SASRecConfig(n_items=split.n_items, n_events=len(vocab["events"]) + 1, **model_cfg_kwargs,
                             **text_kwargs)
    seed_everything(cfg.seed)
    model = SASRec(model_cfg)
    if source is not None:
        from models.warm_start import warm_start

        warm_start(model, vocab["items"], vocab["events"], *source)
        text_meta = {"init_from": str(init_from)}
    if text_matrix is not None:
        model.set_item_text(torch.from_numpy(text_matrix))
        text_meta = {"text": {"model": item_embeddings.model, "dim": model_cfg.text_dim,
                              "items_without_text": missing, "file": TEXT_PROJECTION_FILE}}
    log.info("model: %s, %d parameters; train: %s", model_cfg, sum(p.numel() for p in model.parameters()), cfg)
    model, state = train(model, split, cfg, out / "checkpoints", resume=resume, progress=progress)
    seen_events = torch.zeros(model_cfg.n_events, dtype=torch.bool)
    seen_events[torch.from_numpy(np.unique(np.concatenate(split.train_events)))] = True
    model.tie_unseen_events(seen_events)
    extra = {"training": {**asdict(cfg), "epochs_run": state.epoch, "best_epoch": state.best_epoch,
                          "train_seconds": round(state.elapsed_s, 1), "valid_best": state.best_ndcg,
                          "history": state.history}, **text_meta}
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(state.history, out / CURVES_FILE)
    return write_artifact(model, vocab, out, name, version, data.description, extra,
                          real_parity_inputs(split, model_cfg.max_len), parity_atol)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="artifact directory models/<name>/<version>")
    p.add_argument("--name", help="model name (default: parent directory name of --out)")
    p.add_argument("--version", help="model version (default: directory name of --out)")
    add_data_args(p)
    d = SASRecConfig(n_items=3)
    p.add_argument("--max-len", type=int, default=d.max_len)
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--n-heads", type=int, default=d.n_heads)
    p.add_argument("--n-layers", type=int, default=d.n_layers)
    p.add_argument("--d-ff", type=int, default=d.d_ff)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--item-embeddings", type=Path, default=None,
                   help="content-aware model: directory written by `python -m models.item_embeddings` "
                        "(item ids as in the events); default: ID-only")
    p.add_argument("--id-dropout", type=float, default=0.1,
                   help="content-aware only: probability of zeroing an item's ID row per batch")
    t = TrainConfig()
    p.add_argument("--loss", choices=LOSSES, default=t.loss)
    p.add_argument("--n-negatives", type=int, default=t.n_negatives)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--weight-decay", type=float, default=t.weight_decay)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--patience", type=int, default=t.patience)
    p.add_argument("--eval-every", type=int, default=t.eval_every)
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--threads", type=int, default=t.threads)
    p.add_argument("--time-budget-min", type=float, default=t.time_budget_min)
    p.add_argument("--lr-decays", type=int, default=t.lr_decays)
    p.add_argument("--lr-decay-factor", type=float, default=t.lr_decay_factor)
    p.add_argument("--test-split", choices=TEST_SPLITS, default=LEAVE_ONE_OUT,
                   help="test on each user's last event, or (with --train-until) on their first event after the cut")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this published ID-only model's weights (retraining on newer data: item rows "
                        "mapped by id, new items fresh; its architecture replaces --max-len/--d-model/...)")
    p.add_argument("--no-eval", action="store_true", help="skip models.evaluate (metrics.json) at the end")
    p.add_argument("--baselines", action="store_true", help="also evaluate most-popular and item-kNN")
    p.add_argument("--int8", action="store_true", help="also quantize to int8 and measure quality/speed")
    p.add_argument("--parity-atol", type=float, default=PARITY_ATOL, help="ONNX vs eager max |diff| gate")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # Our loggers at INFO; third-party (onnx_ir, quantizer on the root logger) only at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("models").setLevel(logging.INFO)
    args = parse_args(argv)
    out: Path = args.out
    cfg = TrainConfig(
        loss=args.loss, n_negatives=args.n_negatives, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, epochs=args.epochs, patience=args.patience, eval_every=args.eval_every,
        seed=args.seed, threads=args.threads, time_budget_min=args.time_budget_min, lr_decays=args.lr_decays,
        lr_decay_factor=args.lr_decay_factor, train_until_ms=parse_time_ms(args.train_until),
    )
    model_kwargs = {"max_len": args.max_len, "d_model": args.d_model, "n_heads": args.n_heads,
                    "n_layers": args.n_layers, "d_ff": args.d_ff, "dropout": args.dropout,
                    "id_dropout": args.id_dropout}
    if args.test_split == TIME_SPLIT and cfg.train_until_ms is None:
        log.error("--test-split time needs --train-until (the cut the test starts at)")
        return 2
    try:
        data = data_from_args(args, cfg.train_until_ms)
        item_embeddings = None
        if args.item_embeddings is not None:
            from models.item_embeddings import load_item_embeddings

            item_embeddings = load_item_embeddings(args.item_embeddings)
    except DataError as exc:  # bad input is the user's to fix: one clear line, no traceback
        log.error("%s", exc)
        return 2
    data.description["test_split"] = args.test_split
    if args.test_split == TIME_SPLIT:
        data.description["split"] = ("validation: leave-one-out before the cut; test: each user's first event "
                                     "after the cut, from every event before it")
    run(data, out, model_kwargs, cfg, args.name or out.parent.name, args.version or out.name,
        resume=args.resume, progress=not args.no_progress, parity_atol=args.parity_atol,
        item_embeddings=item_embeddings, init_from=args.init_from)
    if not args.no_eval:
        from models.evaluate import evaluate_artifact

        evaluate_artifact(out, data, baselines=args.baselines, int8=args.int8)
    log.info("artifact ready: %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
