"""The feedback loop's retraining step: what users did, read back from Kafka -> a model warm-started
from the serving one -> published -> announced as an A/B split against it.

    serve -> feedback (jobs/feedback_job.py: training-samples, online metrics per version and arm)
          -> retrain (this module: models.train --bootstrap-servers ... --init-from <serving model>)
          -> publish (models/registry.py: checksum, contract and canary checks)
          -> swap (model-updates: half the users on the new version, half on the old)
          -> the online metric per version says whether the new one is better

The trainer runs as its own process (`python -m models.train`, torch threads of its own), as it
would on a training cluster; the replay (jobs/replay.py) calls `retrain_and_announce` once, with
the request stream paused, so the comparison is between versions serving the same period.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jobs.config import REPO_ROOT
from jobs.kafka_io import produce
from models.artifact import load_artifact
from models.registry import ANNOUNCE_KEY, Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainSettings:
    """How the serving model is fine-tuned on newer data (models.train flags)."""

    epochs: int = 1
    lr: float = 5e-4
    time_budget_min: float = 5.0
    threads: int = 1
    new_share: float = 0.5  # of users on the retrained version after the swap

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.time_budget_min <= 0 or self.threads < 1:
            raise ValueError(f"epochs, lr, time_budget_min and threads must be positive: {self}")
        if not 0.0 < self.new_share < 1.0:
            raise ValueError(f"new_share must be in (0, 1) (an A/B split), got {self.new_share}")


def announce_arms(bootstrap: str, topic: str, registry: Registry, arms: dict[str, tuple[str | Path, float]],
                  salt: str) -> dict[str, Any]:
    """Publish each arm's model directory (once per version) and announce the split on `topic`:
    {arm: (model_dir, share)} -> the announcement record (udfs/control.py reads it)."""
    named = {}
    for arm, (model_dir, share) in arms.items():
        artifact = load_artifact(model_dir)
        model = f"{artifact.name}/{artifact.version}"
        if model not in registry.versions():
            registry.publish(model_dir)
        named[arm] = {"model": model, "share": float(share)}
    record = {"arms": registry.resolve_arms(named), "salt": salt}
    produce(bootstrap, topic, [(ANNOUNCE_KEY.decode(), record)])
    log.info("announced A/B split %s", {a: (v["model"], v["share"]) for a, v in named.items()})
    return record


def train_command(bootstrap: str | None, events_topic: str, init_from: Path, out: Path, version: str,
                  settings: RetrainSettings, trained_on: Sequence[Path] = (), since_ms: int | None = None) -> list[str]:
    """The models.train command line that retrains on `trained_on` (event files: what the serving
    model was trained on) plus the events topic from record time `since_ms`; `bootstrap` None: the
    files alone (the control, below). Pure: tested alone."""
    files = ["--events", *map(str, trained_on)] if trained_on else []
    topic = ["--bootstrap-servers", bootstrap, "--topic", events_topic] if bootstrap is not None else []
    since = ["--from-ts", str(since_ms)] if since_ms is not None and bootstrap is not None else []
    if not files and not topic:
        raise ValueError("nothing to train on: no event files and no topic")
    return [sys.executable, "-m", "models.train", *files, *topic,
            *since, "--skip-invalid", "--init-from", str(init_from), "--out", str(out), "--version", version,
            "--epochs", str(settings.epochs), "--lr", str(settings.lr), "--eval-every", "1", "--patience", "1",
            "--lr-decays", "0", "--time-budget-min", str(settings.time_budget_min),
            "--threads", str(settings.threads), "--no-eval", "--no-progress"]


def _train(command: list[str]) -> float:
    log.info("retraining: %s", " ".join(command))
    start = time.monotonic()
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    return time.monotonic() - start


def retrain_and_announce(bootstrap: str, events_topic: str, model_updates_topic: str, serving: Path,
                         workdir: Path, version: str, settings: RetrainSettings = RetrainSettings(),
                         trained_on: Sequence[Path] = (), since_ms: int | None = None,
                         control: bool = False) -> dict[str, Any]:
    """Retrain `serving` on `trained_on` plus `events_topic` since `since_ms`, publish both versions
    to a registry under `workdir`, announce the split {"before": serving, "after": retrained};
    returns what happened.

    `control`: also fine-tune `serving` the same way on `trained_on` alone (`<version>-control`,
    not announced). A warm-started fine-tune gains from the extra epoch by itself; the control
    separates that from what the newer data adds when the versions are compared offline."""
    artifact = load_artifact(serving)
    out = workdir / "trained" / artifact.name / version
    train_s = _train(train_command(bootstrap, events_topic, serving, out, version, settings, trained_on, since_ms))
    retrained = load_artifact(out)
    record = announce_arms(bootstrap, model_updates_topic, Registry(workdir / "registry"),
                           {"before": (serving, 1 - settings.new_share), "after": (out, settings.new_share)},
                           salt=f"retrain-{version}")
    training = retrained.config.get("training", {})
    result = {"before": record["arms"]["before"]["model"], "after": record["arms"]["after"]["model"],
              "artifact_dir": str(out), "train_s": round(train_s, 1), "trained_on": retrained.config.get("trained_on", {}),
              "epochs_run": training.get("epochs_run"), "valid_best": training.get("valid_best"),
              "settings": {"epochs": settings.epochs, "lr": settings.lr, "new_share": settings.new_share}}
    if control and trained_on:
        control_out = workdir / "trained" / artifact.name / f"{version}-control"
        control_s = _train(train_command(None, events_topic, serving, control_out, f"{version}-control", settings,
                                         trained_on))
        controlled = load_artifact(control_out)
        result.update({"control": f"{controlled.name}/{controlled.version}", "control_dir": str(control_out),
                       "control_train_s": round(control_s, 1),
                       "control_trained_on": controlled.config.get("trained_on", {})})
    return result
