"""Model versions loaded off the request path, swapped in atomically, and called with a time limit.

`ModelSwitch` keeps the serving set the request path reads (`current`): the loaded scorers of every
version that takes traffic, and the split over them. A new serving set (`udfs.control.Serving`) is
loaded and validated on a background thread while the old one keeps serving; the request path
picks the result up in `poll()` and switches by one assignment, so a request is scored either by
the old set or by the new one, never by a half-loaded one. A version that fails to load or validate
is refused with its reason and the old set stays.

`TimedScorer` runs the model on a worker thread and gives up after a time limit, so a stalled model
costs a fallback list, not a stuck operator.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

from udfs.control import ModelRef, Serving

log = logging.getLogger(__name__)
T = TypeVar("T")


def in_python_thread(build: Callable[[], T]) -> T:
    """Run `build` on a thread that Python itself started, and return its result.

    Thread mode runs operator code on a JVM thread whose Python thread state is not registered
    with the PyGILState API. pybind11 modules (onnxruntime) call PyGILState_Ensure when they are
    first imported and set up; on such a thread that waits for the GIL the thread already holds,
    for ever. A `threading.Thread` has a registered state, and join() releases the GIL meanwhile.
    """
    result: list = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(build())
        except BaseException as exc:  # re-raised on the calling thread below
            error.append(exc)

    worker = threading.Thread(target=target, name="rerank-model-load")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


class ScoringTimeout(Exception):
    """The model did not answer within the scoring time limit."""


class _Worker:
    """One Python-started thread running calls handed to it, one at a time."""

    def __init__(self) -> None:
        self.jobs: collections.deque = collections.deque()
        self.wake = threading.Condition()
        self.retired = False
        self.thread = threading.Thread(target=self._serve, name="rerank-scoring", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            with self.wake:
                while not self.jobs and not self.retired:
                    self.wake.wait()
                if not self.jobs:
                    return  # retired and drained: the thread ends
                fn, args, done, box = self.jobs.popleft()
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # handed to the caller, which logs and falls back
                box.append((False, exc))
            done.set()

    def submit(self, fn: Callable, args: tuple) -> tuple[threading.Event, list]:
        done, box = threading.Event(), []
        with self.wake:
            self.jobs.append((fn, args, done, box))
            self.wake.notify()
        return done, box

    def retire(self) -> None:
        with self.wake:
            self.retired = True
            self.wake.notify()


class TimedScorer:
    """Calls `fn(*args)` on a long-lived worker thread and waits at most `timeout_s` for it.

    A call that times out leaves its worker behind (it ends when the stalled call returns) and the
    next call gets a fresh worker, so one stall costs one fallback list, not every list after it.
    At most `max_stalled` abandoned workers may still be running; beyond that calls wait for the
    newest one instead of starting more threads. Workers are Python-started threads, which
    onnxruntime needs in thread mode (`in_python_thread`).
    """

    def __init__(self, timeout_s: float, max_stalled: int = 4) -> None:
        self.timeout_s = timeout_s
        self.max_stalled = max_stalled
        self._worker = _Worker()
        self._stalled: list[_Worker] = []

    def call(self, fn: Callable[..., T], *args: object) -> T:
        done, box = self._worker.submit(fn, args)
        if not done.wait(self.timeout_s):
            self._stalled = [w for w in self._stalled if w.thread.is_alive()]
            if len(self._stalled) < self.max_stalled:
                self._worker.retire()
                self._stalled.append(self._worker)
                self._worker = _Worker()
            raise ScoringTimeout(f"no answer within {self.timeout_s * 1000:.0f} ms")
        ok, value = box[0]
        if not ok:
            raise value
        return value


@dataclass(frozen=True)
class LoadedSet:
    """A serving set whose versions are all loaded and validated: what the request path reads."""

    serving: Serving
    scorers: Mapping[str, object]  # name/version -> udfs.scoring.OnnxScorer


@dataclass(frozen=True)
class Outcome:
    """How one requested serving set ended: swapped in, or refused with a reason."""

    tag: object  # what the caller passed to `request` (e.g. the control record's coordinates)
    serving: Serving
    error: str | None = None
    load_ms: float = 0.0


class ModelSwitch:
    """The serving set in use, and the loading of the next one on a background thread."""

    def __init__(self, load: Callable[[ModelRef], object]) -> None:
        """load(ref) -> a validated scorer for that version, or raises with the reason."""
        self._load = load
        self.current: LoadedSet | None = None
        self._todo: collections.deque = collections.deque()
        self._done: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def _build(self, serving: Serving, have: Mapping[str, object]) -> LoadedSet:
        scorers = {}
        for model in serving.active_models:
            ref = serving.models[model]
            reuse = have.get(model)
            # A version is reused only when it is the same files (same uri and checksum).
            if reuse is not None and getattr(reuse, "ref", None) == ref:
                scorers[model] = reuse
            else:
                scorers[model] = self._load(ref)
        return LoadedSet(serving, scorers)

    def load_now(self, serving: Serving) -> LoadedSet:
        """Load synchronously (start and restore, when nothing serves yet); raises on failure."""
        loaded = in_python_thread(lambda: self._build(serving, self.current.scorers if self.current else {}))
        self.current = loaded
        return loaded

    def request(self, serving: Serving, tag: object) -> None:
        """Load `serving` in the background; `poll()` reports and applies the outcome."""
        with self._lock:
            self._todo.append((serving, tag))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, name="rerank-model-swap", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._todo:
                    return
                serving, tag = self._todo.popleft()
                base = self._done[-1][0] if self._done and self._done[-1][0] is not None else self.current
            start = time.perf_counter()
            try:
                loaded, error = self._build(serving, base.scorers if base else {}), None
            except Exception as exc:  # any load/validation failure refuses this set; the reason is reported
                loaded, error = None, f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._done.append((loaded, Outcome(tag, serving, error, (time.perf_counter() - start) * 1000)))

    def poll(self) -> list[Outcome]:
        """Apply finished loads in order (cheap when there are none): the newest good set serves."""
        if not self._done:
            return []
        outcomes = []
        with self._lock:
            while self._done:
                loaded, outcome = self._done.popleft()
                if loaded is not None:
                    self.current = loaded
                outcomes.append(outcome)
        return outcomes

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is loading (tests and shutdown); True if idle in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                worker = self._worker
                if not self._todo and (worker is None or not worker.is_alive()):
                    return True
            time.sleep(0.01)
        return False


def finite_scores(scores: np.ndarray, n: int) -> np.ndarray:
    """The scores if they are a finite (n,) float array; ValueError naming what is wrong otherwise."""
    scores = np.asarray(scores)
    if scores.shape != (n,):
        raise ValueError(f"scores have shape {scores.shape}, expected ({n},)")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {n} scores are not finite")
    return scores


def restore_order(history: Sequence[Serving], load_now: Callable[[Serving], LoadedSet]) -> tuple[LoadedSet, list[str]]:
    """After a restart: serve the newest recorded serving set that loads, as before the restart.

    A set that was refused before the restart is refused again (same files, same checks), so the
    job comes back serving what it served. Returns the loaded set and the reasons of skipped ones.
    """
    errors = []
    for serving in reversed(history):
        try:
            return load_now(serving), errors
        except Exception as exc:  # try the previous set; reasons are logged by the caller
            errors.append(f"{serving.active_models}: {type(exc).__name__}: {exc}")
    raise RuntimeError(f"no recorded serving set loads: {errors}")
