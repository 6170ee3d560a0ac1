"""Loading model versions off the request path, swapping atomically, and time-limited model calls."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.models.bad_models import make_bad
from udfs.control import ModelRef, Serving
from udfs.serving import ModelSwitch, ScoringTimeout, TimedScorer, finite_scores, restore_order
from udfs.scoring import load_validated


class FakeScorer:
    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref


def test_switch_loads_in_background_and_swaps_only_good_sets():
    release = threading.Event()
    loads = []

    def load(ref: ModelRef):
        loads.append(ref.model)
        if ref.model == "m/slow":
            release.wait(10)
        if ref.model == "m/bad":
            raise ValueError("canary failed")
        return FakeScorer(ref)

    switch = ModelSwitch(load)
    v1 = Serving.single(ModelRef("m/v1", "/v1"))
    switch.load_now(v1)
    slow = Serving.single(ModelRef("m/slow", "/slow"))
    switch.request(slow, "t-slow")
    time.sleep(0.05)
    assert switch.poll() == [] and switch.current.serving == v1  # still loading: the old set serves
    release.set()
    assert switch.wait_idle(10)
    [outcome] = switch.poll()
    assert outcome.error is None and outcome.tag == "t-slow" and switch.current.serving == slow
    bad = Serving.single(ModelRef("m/bad", "/bad"))
    switch.request(bad, "t-bad")
    assert switch.wait_idle(10)
    [outcome] = switch.poll()
    assert "canary failed" in outcome.error and switch.current.serving == slow
    # A set that reuses a loaded version (same uri) does not load it again.
    both = Serving(dict(slow.models), slow.arms, "salt")
    switch.request(both, "t-same")
    assert switch.wait_idle(10) and switch.poll()[0].error is None
    assert loads.count("m/slow") == 1


def test_restore_serves_the_newest_set_that_loads():
    ok1, bad, ok2 = (Serving.single(ModelRef(m, "/" + m)) for m in ("m/a", "m/bad", "m/b"))

    def load_now(s: Serving):
        if s is bad:
            raise ValueError("gone")
        return s

    assert restore_order([ok1, ok2, bad], load_now) == (ok2, ["['m/bad']: ValueError: gone"])
    with pytest.raises(RuntimeError, match="no recorded serving set loads"):
        restore_order([bad], load_now)


def test_timed_scorer_returns_raises_and_gives_up_on_a_stall():
    timed = TimedScorer(0.2)
    assert timed.call(lambda x: x * 2, 21) == 42
    with pytest.raises(KeyError):
        timed.call(lambda: {}["missing"])
    start = time.monotonic()
    with pytest.raises(ScoringTimeout):
        timed.call(time.sleep, 1.0)
    assert time.monotonic() - start < 0.6
    # The stalled call does not hold up the next one: it runs on a fresh worker.
    assert timed.call(lambda: "next") == "next"
    assert time.monotonic() - start < 0.8


def test_finite_scores():
    assert finite_scores(np.array([1.0, 2.0], np.float32), 2).shape == (2,)
    with pytest.raises(ValueError, match="1 of 2 scores are not finite"):
        finite_scores(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError, match="shape"):
        finite_scores(np.zeros(3), 2)


def test_load_validated_checks_checksum_and_name(tmp_path, model_dir):
    from models.registry import Registry

    published = Registry(tmp_path / "reg").publish(model_dir, name="sasrec", version="s1")
    ref = ModelRef("sasrec/s1", published.uri, published.sha256)
    scorer = load_validated(ref, ["CPUExecutionProvider"])
    assert scorer.ref == ref and scorer.version == "sasrec/s1"
    with pytest.raises(Exception, match="holds sasrec/s1, the announcement says sasrec/other"):
        load_validated(ModelRef("sasrec/other", published.uri), ["CPUExecutionProvider"])
    with pytest.raises(Exception, match="the announcement says"):
        load_validated(ModelRef("sasrec/s1", published.uri, "b" * 64), ["CPUExecutionProvider"])
    bad = make_bad(model_dir, tmp_path / "nan", "nan_weights")
    with pytest.raises(Exception, match="not finite"):
        load_validated(ModelRef("sasrec/v3", str(bad)), ["CPUExecutionProvider"])
