"""Run the real job on the PyFlink minicluster in the background of a test."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from jobs.config import JobConfig
from jobs.rerank_job import build_pipeline, create_env

log = logging.getLogger(__name__)


@contextmanager
def running_job(cfg: JobConfig) -> Iterator[object]:
    env = create_env(cfg)
    build_pipeline(env, cfg)
    client = env.execute_async(cfg.job_name)
    log.info("job %s submitted", client.get_job_id())
    try:
        yield client
    finally:
        client.cancel().result()
