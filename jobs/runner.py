"""Build and submit job graphs: the execution environment, table settings, and running a job on the
local minicluster in the background (tests, tools) or in the foreground (main).

Shared by the job modules (jobs/rerank_job.py, jobs/item_embed_job.py), each of which provides
`build_pipeline(env, cfg)` and its config class.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pyflink.common import Configuration, JobClient
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings
from pyflink.util.java_utils import create_url_class_loader

from jobs.config import CLUSTER_PROCESS_KEYS, REPO_ROOT, JobConfig, load_flink_conf, submitted_by_flink_client
from jobs.job_sources import project_sources_zip
from jobs.java_build import java_jar
from udfs.identity import JAVA_SOURCES

log = logging.getLogger(__name__)
PROJECT_PACKAGES = ("jobs", "udfs", "models")
Build = Callable[[StreamExecutionEnvironment, Any], Any]


def udf_jar(build_dir: Path = REPO_ROOT / "build" / "jars") -> Path:
    """The project's Java functions (udfs/java/) as `build_dir/rerank-udfs.jar`, compiled against
    PyFlink's own lib/ when the sources changed."""
    import pyflink

    return java_jar(sorted(JAVA_SOURCES.rglob("*.java")), str(Path(pyflink.__file__).resolve().parent / "lib" / "*"),
                    build_dir / "rerank-udfs.jar", "the project's Java functions (udfs/java/)")


def job_jars(cfg: JobConfig) -> list[str]:
    """The connector jars, plus the project's Java functions when the job calls them (pseudonymized
    ids, the feedback job's online metrics)."""
    if not cfg.uses_java_functions:
        return cfg.jar_paths
    return [*cfg.jar_paths, str(udf_jar())]


def flink_configuration(cfg: JobConfig) -> Configuration:
    """flink-conf/config.yaml plus what the job config decides (Python interpreter, jars)."""
    conf = Configuration()
    under_client = submitted_by_flink_client()
    for key, value in load_flink_conf(cfg.flink_conf).items():
        if under_client and key.startswith(CLUSTER_PROCESS_KEYS):
            continue  # the cluster's own setting (jobs/config.py)
        conf.set_string(key, value)
    conf.set_string("python.executable", cfg.python_executable)
    conf.set_string("python.client.executable", cfg.python_executable)
    if cfg.python_path:
        # Thread mode embeds the interpreter in the JVM (PEMJA); it does not read the virtualenv's
        # site-packages by itself, so they are put on its path explicitly.
        conf.set_string("python.pythonpath", cfg.python_path)
    jars = job_jars(cfg)
    if jars:
        missing = [j for j in jars if not Path(j).is_file()]
        if missing:
            raise FileNotFoundError(f"connector jars not found: {missing} (run scripts/bootstrap.sh)")
        conf.set_string("pipeline.jars", ";".join(Path(j).resolve().as_uri() for j in jars))
    return conf


def create_env(cfg: JobConfig, restore_from: str | None = None) -> StreamExecutionEnvironment:
    """The execution environment; `restore_from`: a savepoint or retained checkpoint to start from."""
    conf = flink_configuration(cfg)
    if restore_from:
        conf.set_string("execution.state-recovery.path", restore_from)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg.parallelism)
    # Ship the project's packages with the job (what `-pyfs` does) as one zip: Flink puts a zip's
    # root on the workers' PYTHONPATH, but a shipped directory itself (jobs/job_sources.py).
    env.add_python_file(str(project_sources_zip(PROJECT_PACKAGES)))
    if cfg.checkpoint_interval_ms:
        # Always aligned (EXACTLY_ONCE) checkpoints, whatever the sink's guarantee: without barrier
        # alignment a checkpoint of a keyed operator with several input channels can hold an event
        # that is also replayed after a restore, i.e. applied to a user's history twice. The sink's
        # delivery guarantee is a separate setting (`sink.delivery-guarantee`).
        env.enable_checkpointing(cfg.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    return env


def table_settings(cfg: JobConfig) -> EnvironmentSettings:
    """Streaming table settings whose user class loader holds the connector jars.

    The planner finds connectors through that loader, which otherwise defaults to the context
    class loader of whichever Java thread py4j uses for the call. PyFlink adds `pipeline.jars` to
    one thread's context loader only, and py4j sometimes serves the next call on a new thread: the
    result was an intermittent "Could not find any factory for identifier 'kafka'" in tests that
    build several jobs in one process.
    """
    jvm = get_gateway().jvm
    builder = jvm.org.apache.flink.table.api.EnvironmentSettings.newInstance().inStreamingMode()
    if job_jars(cfg):
        urls = [jvm.java.net.URL(Path(j).resolve().as_uri()) for j in job_jars(cfg)]
        builder = builder.withClassLoader(
            create_url_class_loader(urls, jvm.Thread.currentThread().getContextClassLoader()))
    return EnvironmentSettings(builder.build())


@contextmanager
def running_job(cfg: JobConfig, build: Build, restore_from: str | None = None) -> Iterator[JobClient]:
    """`build` the job onto a fresh environment and run it on the local minicluster in the
    background; cancelled on exit (unless the caller already stopped it, e.g. with a savepoint).
    `restore_from`: a savepoint or retained checkpoint to start from."""
    env = create_env(cfg, restore_from)
    build(env, cfg)
    client = env.execute_async(cfg.job_name)
    log.info("job %s (%s) submitted", cfg.job_name, client.get_job_id())
    try:
        yield client
    finally:
        if not client.get_job_status().result().is_globally_terminal_state():
            client.cancel().result()
        log.info("job %s cancelled", cfg.job_name)


def stop_with_savepoint(client: JobClient, directory: str) -> str:
    """Stop the job with a canonical savepoint under `directory`; returns the savepoint's path.

    PyFlink 2.3's JobClient.stop_with_savepoint calls a Java signature Flink 2 no longer has (it
    lacks the savepoint format), so the Java client is called directly.
    """
    jvm = get_gateway().jvm
    future = client._j_job_client.stopWithSavepoint(
        False, directory, jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL)
    return str(future.get())


def run_main(config_cls: type[JobConfig], build: Build, argv: Sequence[str] | None = None) -> None:
    """The body of a job module's `main()`: flags/env -> config -> graph -> execute (blocks)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_cls.from_args(argv)
    env = create_env(cfg)
    build(env, cfg)
    env.execute(cfg.job_name)
