"""Submit a job graph: on the local minicluster in the background (tests, tools) or in the foreground (main).

Shared by the job modules, each of which only provides `build_pipeline(env, cfg)` and its config
class. (jobs/rerank_job.py has its own copies of `running` and `main`, from before a second job
existed; they can move onto these.)
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from pyflink.common import JobClient
from pyflink.datastream import StreamExecutionEnvironment

from jobs.config import JobConfig
from jobs.rerank_job import create_env

log = logging.getLogger(__name__)
Build = Callable[[StreamExecutionEnvironment, Any], Any]


@contextmanager
def running_job(cfg: JobConfig, build: Build) -> Iterator[JobClient]:
    """`build` the job onto a fresh environment and run it in the background; cancelled on exit."""
    env = create_env(cfg)
    build(env, cfg)
    client = env.execute_async(cfg.job_name)
    log.info("job %s (%s) submitted", cfg.job_name, client.get_job_id())
    try:
        yield client
    finally:
        client.cancel().result()
        log.info("job %s cancelled", cfg.job_name)


def run_main(config_cls: type[JobConfig], build: Build, argv: Sequence[str] | None = None) -> None:
    """The body of a job module's `main()`: flags/env -> config -> graph -> execute (blocks)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_cls.from_args(argv)
    env = create_env(cfg)
    build(env, cfg)
    env.execute(cfg.job_name)
