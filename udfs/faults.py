"""Fault injection for tests only.

`Faults` is passed to `jobs.rerank_job.build_pipeline(env, cfg, faults=...)` by tests; no config
field, flag, environment variable or input record can create or change it, so production jobs
never carry it (the default is None and the hot path checks one attribute).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

T = TypeVar("T")
MODEL_FAULTS = ("raise", "nan", "stall")


class InjectedFault(RuntimeError):
    """Raised where a test asked for a failure."""


@dataclass(frozen=True)
class Faults:
    """fail_on_request:    the scoring operator raises (failing the task) when this request id arrives,
                           once: `marker` is created when it fires and the restarted operator sees it.
    model:                 request_id -> "raise" | "nan" | "stall": the model misbehaves for that request.
    stall_s:               how long a "stall" blocks the model call.
    """

    fail_on_request: str = ""
    marker: str = ""
    model: Mapping[str, str] = field(default_factory=dict)
    stall_s: float = 5.0

    def __post_init__(self) -> None:
        if self.fail_on_request and not self.marker:
            raise ValueError("fail_on_request needs a marker file, or the restarted job fails again for ever")
        bad = {k: v for k, v in self.model.items() if v not in MODEL_FAULTS}
        if bad:
            raise ValueError(f"model faults must be one of {MODEL_FAULTS}: {bad}")

    def on_request(self, request_id: str) -> None:
        """Fail the task at the configured request, the first time only (across restarts)."""
        if request_id == self.fail_on_request and self.fail_on_request:
            marker = Path(self.marker)
            if not marker.exists():
                marker.write_text(str(time.time()))
                raise InjectedFault(f"injected operator failure at request {request_id}")

    def wrap_model(self, request_id: str, score: Callable[[], T]) -> Callable[[], T]:
        """`score`, or a misbehaving stand-in when the test named this request."""
        kind = self.model.get(request_id)
        if kind is None:
            return score
        if kind == "raise":
            def failing() -> T:
                raise InjectedFault(f"injected model exception for request {request_id}")
            return failing
        if kind == "nan":
            def nan_scores() -> T:
                return score() * float("nan")
            return nan_scores

        def stalled() -> T:
            time.sleep(self.stall_s)
            return score()
        return stalled
