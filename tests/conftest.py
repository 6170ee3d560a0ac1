"""Shared fixtures: one real Kafka-protocol broker per test session, on a free loopback port."""
from __future__ import annotations

import logging
import uuid

import pytest

from jobs.config import JobConfig


@pytest.fixture(scope="session")
def broker():
    from jobs.local_broker import LocalBroker

    logging.getLogger("kafka").setLevel(logging.WARNING)
    with LocalBroker() as b:
        yield b


@pytest.fixture
def topics(broker, request):
    """Fresh, uniquely named topics for one test (2 partitions each)."""
    run = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{run}" for k in ("user-events", "rank-requests", "ranked-lists", "dead-letters")}
    broker.create_topics(list(names.values()), partitions=2)
    return names


@pytest.fixture(scope="session")
def model_dir() -> str:
    import os
    # The artifact the job serves by default, unless a test run asks for another.
    return os.environ.get("RERANK_TEST_MODEL", JobConfig().model_dir)
