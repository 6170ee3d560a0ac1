"""The standalone cluster the slow cluster tests submit to (one per test module)."""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import pytest

from jobs.cluster import ClusterSpec, StandaloneCluster
from jobs.config import REPO_ROOT
from jobs.local_broker import free_port

log = logging.getLogger(__name__)


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - best-effort clean-up; the cluster is stopped right after
        log.warning("cluster clean-up step failed: %s", exc)
        return default


@pytest.fixture(scope="module")
def cluster() -> Iterator[StandaloneCluster]:
    spec = ClusterSpec(rest_port=free_port(), rpc_port=free_port(), slots=2,
                       jm_metrics_port=free_port(), tm_metrics_port=free_port())
    c = StandaloneCluster(spec, home=REPO_ROOT / "build" / "flink-it")
    c.start(timeout_s=120)
    try:
        yield c
    finally:
        for job in _safe(c.active_jobs, []):
            _safe(lambda: c.cancel(job), None)
        c.stop()
