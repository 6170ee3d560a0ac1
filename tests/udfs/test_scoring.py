"""Execution-provider choice: CUDA only where its libraries load (no loud fallback on CPU machines)."""
import logging

from udfs.scoring import OnnxScorer, _provider_loads, usable_providers


def test_unknown_or_unloadable_providers_fall_back_to_cpu():
    assert usable_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    chosen = usable_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in chosen) == _provider_loads("CUDAExecutionProvider")


def test_the_provider_in_use_is_logged_once(model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="udfs.scoring"):
        scorer = OnnxScorer(model_dir, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    lines = [r.getMessage() for r in caplog.records if "loaded from" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith(", ".join(scorer.session.get_providers()))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
