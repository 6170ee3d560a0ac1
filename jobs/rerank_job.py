"""The re-ranking job.

    Kafka (user-events, rank-requests) -> parse/validate -(bad)-> dead-letters
      -> key_by(user_id) -> UserState (rolling history in keyed state)
      -> Table API: pandas UDF scores each Arrow batch with ONNX Runtime
      -> ranked-list JSON -> Kafka (ranked-lists, keyed by user_id)

Run: `python -m jobs.rerank_job --help` (locally) or `flink run -py jobs/rerank_job.py` (cluster).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator, Sequence

if __package__ in (None, ""):  # `flink run -py jobs/rerank_job.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Configuration, JobClient, Types
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, StreamTableEnvironment
from pyflink.table.expressions import col
from pyflink.util.java_utils import create_url_class_loader

from jobs.config import CLUSTER_PROCESS_KEYS, REPO_ROOT, JobConfig, load_flink_conf, submitted_by_flink_client
from jobs.job_sources import project_sources_zip
from udfs.functions import DEAD_LETTERS, KEYED_VALUE, SCORING_ROW, AssembleRankedList, ParseRecords, UserState
from udfs.scoring import OnnxScorer, rank_scorer

log = logging.getLogger(__name__)
PROJECT_PACKAGES = ("jobs", "udfs", "models")


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
    if cfg.jar_paths:
        missing = [j for j in cfg.jar_paths if not Path(j).is_file()]
        if missing:
            raise FileNotFoundError(f"connector jars not found: {missing} (run scripts/bootstrap.sh)")
        conf.set_string("pipeline.jars", ";".join(Path(j).resolve().as_uri() for j in cfg.jar_paths))
    return conf


def create_env(cfg: JobConfig) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(cfg))
    env.set_parallelism(cfg.parallelism)
    # Ship the project's packages with the job (what `-pyfs` does) as one zip: Flink puts a zip's
    # root on the workers' PYTHONPATH, but a shipped directory itself (jobs/job_sources.py).
    env.add_python_file(str(project_sources_zip(PROJECT_PACKAGES)))
    if cfg.checkpoint_interval_ms:
        mode = CheckpointingMode.EXACTLY_ONCE if cfg.delivery_guarantee == "EXACTLY_ONCE" else CheckpointingMode.AT_LEAST_ONCE
        env.enable_checkpointing(cfg.checkpoint_interval_ms, mode)
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
    if cfg.jar_paths:
        urls = [jvm.java.net.URL(Path(j).resolve().as_uri()) for j in cfg.jar_paths]
        builder = builder.withClassLoader(
            create_url_class_loader(urls, jvm.Thread.currentThread().getContextClassLoader()))
    return EnvironmentSettings(builder.build())


def _kafka_options(cfg: JobConfig, topic: str, **extra: str) -> str:
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": cfg.bootstrap_servers, **extra}
    return ", ".join(f"'{k}' = '{v}'" for k, v in options.items())


def _sink_options(cfg: JobConfig, topic: str, **extra: str) -> str:
    guarantee = cfg.delivery_guarantee.lower().replace("_", "-")
    return _kafka_options(cfg, topic, **{"sink.delivery-guarantee": guarantee,
                                         "sink.transactional-id-prefix": f"{cfg.group_id}-{topic}", **extra})


def build_pipeline(env: StreamExecutionEnvironment, cfg: JobConfig) -> StreamTableEnvironment:
    """Wire the whole job onto `env`; the caller runs `env.execute(...)` or `execute_async`."""
    # Refuse a bad model directory here, on the client, rather than in a restart loop on the workers.
    artifact = OnnxScorer(cfg.model_dir, ["CPUExecutionProvider"]).artifact
    model_version = f"{artifact.name}/{artifact.version}"
    t_env = StreamTableEnvironment.create(env, environment_settings=table_settings(cfg))

    # One source over both input topics: a user's events and requests pass through the same
    # reader -> key_by path in the order they were consumed.
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE rerank_input (
            `topic` STRING METADATA VIRTUAL,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            `timestamp` TIMESTAMP_LTZ(3) METADATA VIRTUAL,
            `value` BYTES
        ) WITH ({_kafka_options(cfg, f'{cfg.events_topic};{cfg.requests_topic}', **{
            'properties.group.id': cfg.group_id,
            'properties.auto.offset.reset': 'earliest',
            'scan.startup.mode': cfg.startup_mode,
            'properties.fetch.max.wait.ms': str(cfg.fetch_max_wait_ms),
            'format': 'raw'})})""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE rerank_output (`k` STRING, `v` STRING)
        WITH ({_sink_options(cfg, cfg.output_topic, **{
            'key.format': 'raw', 'key.fields': 'k',
            'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY'})})""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE rerank_dead_letters (`v` STRING)
        WITH ({_sink_options(cfg, cfg.dead_letter_topic, format='raw')})""")

    # (topic, partition, offset, record timestamp, value: bytes)
    raw = t_env.to_data_stream(t_env.from_path("rerank_input").select(
        col("topic"), col("partition"), col("offset"), col("timestamp"), col("value")))
    parsed = raw.process(ParseRecords(cfg.events_topic, cfg.requests_topic, cfg.max_candidates),
                         output_type=Types.PICKLED_BYTE_ARRAY()).name("parse").uid("parse")
    dead_letters = parsed.get_side_output(DEAD_LETTERS)  # (dead-letter JSON,)

    # (request_id, user_id, hist_items[<=L], hist_events[<=L], candidates[C], k, history_len, ts)
    scoring_rows = (parsed
                    .key_by(lambda r: r[1].user_id, key_type=Types.STRING())
                    .process(UserState(artifact.max_len, cfg.decay_half_life_ms, cfg.state_ttl_ms,
                                       cfg.request_hold_ms),
                             output_type=SCORING_ROW)
                    .name("user-state").uid("user-state"))

    # Absolute: the workers resolve a relative path against their own working directory.
    score = rank_scorer(str(Path(cfg.model_dir).resolve()), cfg.providers, cfg.onnx_threads)
    requests = t_env.from_data_stream(scoring_rows)
    scored = requests.add_columns(score(col("hist_items"), col("hist_events"), col("candidates")).alias("scores"))
    # (user_id, ranked-list JSON)
    ranked = (t_env.to_data_stream(scored)
              .map(AssembleRankedList(model_version), output_type=KEYED_VALUE).name("ranked-list").uid("ranked-list"))

    statements = t_env.create_statement_set()
    statements.add_insert("rerank_output", t_env.from_data_stream(ranked))
    statements.add_insert("rerank_dead_letters", t_env.from_data_stream(dead_letters))
    statements.attach_as_datastream()
    log.info("pipeline built: %s + %s -> %s (dead letters -> %s), model %s, parallelism %d, %s",
             cfg.events_topic, cfg.requests_topic, cfg.output_topic, cfg.dead_letter_topic,
             model_version, cfg.parallelism, cfg.delivery_guarantee)
    return t_env


@contextmanager
def running(cfg: JobConfig) -> Iterator[JobClient]:
    """Run the job on the local minicluster in the background; cancelled on exit."""
    env = create_env(cfg)
    build_pipeline(env, cfg)
    client = env.execute_async(cfg.job_name)
    log.info("job %s (%s) submitted", cfg.job_name, client.get_job_id())
    try:
        yield client
    finally:
        client.cancel().result()
        log.info("job %s cancelled", cfg.job_name)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = JobConfig.from_args(argv)
    env = create_env(cfg)
    build_pipeline(env, cfg)
    env.execute(cfg.job_name)


if __name__ == "__main__":
    main()
