"""The re-ranking job.

    Kafka (user-events, rank-requests; per-partition watermarks on the record timestamp)
      -> key by user_id (extracted in SQL, keyed in the JVM)
      -> RerankFunction (thread mode): parse/validate -(bad)-> dead-letters; events fold into the
         user's compact history; a request waits for the watermark to pass its timestamp, then is
         scored with ONNX Runtime in the same operator
      -> ranked-list JSON -> Kafka (ranked-lists, keyed by user_id)

    `--scoring pandas` instead: parse -> key_by -> UserState -> pandas UDF (one ONNX Runtime call
    per Arrow batch, process mode) -> ranked list: for bulk re-scoring with large batches.

Run: `python -m jobs.rerank_job --help` (locally) or `flink run -py jobs/rerank_job.py` (cluster).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import ContextManager, Sequence

if __package__ in (None, ""):  # `flink run -py jobs/rerank_job.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import JobClient, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyflink.table.expressions import col

from jobs.config import JobConfig
from jobs.kafka_tables import RAW_RECORD, keyed_by, keyed_sink_ddl, kafka_options, raw_source_ddl, sql_quote, value_sink_ddl
from jobs.planning import attach_inserts, create_java_function, to_append_stream, to_data_stream
# create_env and stop_with_savepoint are re-exported: tests and tools import them from here.
from jobs.runner import create_env, run_main, running_job, stop_with_savepoint, table_settings  # noqa: F401
from udfs.functions import DEAD_LETTERS, KEYED_VALUE, SCORING_ROW, AssembleRankedList, ParseRecords, UserState
from udfs.faults import Faults
from udfs.identity import FUNCTION_CLASS as PSEUDONYM_CLASS, read_key
from udfs.rerank import EMBEDDING_STATE, MODEL_STATE, TREND_STATE, RerankFunction
from udfs.scoring import OnnxScorer, rank_scorer

log = logging.getLogger(__name__)
# How long the control topic may go without records before it stops holding back the operator's
# watermark. Its watermark is also shifted a day ahead, so a fresh announcement never holds back the
# release of requests (which waits for the user-events/rank-requests watermark only).
CONTROL_IDLE_TIMEOUT = "1 s"
CONTROL_DISCOVERY_INTERVAL = "10 s"


def broadcast_topics_pattern(cfg: JobConfig) -> str:
    """The broadcast inputs' topics as one regex: model-updates, and item-embeddings / item-trends when set."""
    topics = [cfg.model_updates_topic] + [t for t in (cfg.embeddings_topic, cfg.trends_topic) if t]
    return "|".join(f"(?:{re.escape(t)})" for t in topics) if len(topics) > 1 else re.escape(topics[0])


def _broadcast_inputs(t_env: StreamTableEnvironment, cfg: JobConfig) -> DataStream:
    """(topic, partition, offset, timestamp, value, key) rows of the control topic and of the
    item-embeddings and item-trends topics (compacted: read from the start on a fresh job), for broadcasting."""
    options = kafka_options(cfg, None, **{
        # A pattern, not a topic list: a missing control or embeddings topic is not an error (the
        # job runs on --model-dir, without item vectors, until someone creates it), and is found
        # once created.
        'topic-pattern': broadcast_topics_pattern(cfg),
        'scan.topic-partition-discovery.interval': CONTROL_DISCOVERY_INTERVAL,
        'properties.group.id': cfg.group_id,
        'properties.auto.offset.reset': 'earliest',
        'scan.startup.mode': cfg.startup_mode,
        'scan.watermark.idle-timeout': CONTROL_IDLE_TIMEOUT,
        'key.format': 'raw', 'key.fields': 'key',
        'value.format': 'raw', 'value.fields-include': 'EXCEPT_KEY'})
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE model_updates (
            `topic` STRING METADATA VIRTUAL,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
            `key` BYTES,
            `value` BYTES,
            WATERMARK FOR `ts` AS `ts` + INTERVAL '1' DAY
        ) WITH ({options})""")
    return to_append_stream(
        t_env, t_env.sql_query("SELECT `topic`, `partition`, `offset`, `ts`, `value`, `key` FROM model_updates"),
        RAW_RECORD)


def build_pipeline(env: StreamExecutionEnvironment, cfg: JobConfig, faults: Faults | None = None) -> StreamTableEnvironment:
    """Wire the whole job onto `env`; the caller runs `env.execute(...)` or `execute_async`.

    `faults`: test-only fault injection (udfs/faults.py); never set from configuration.
    """
    if cfg.pseudonymize_key and (cfg.pseudonymize_key.startswith("file:") and Path(cfg.pseudonymize_key[5:]).exists()
                                 or cfg.pseudonymize_key[4:] in os.environ):
        read_key(cfg.pseudonymize_key)  # readable here: refuse a short key now, not in a restart loop
    # Refuse a bad model directory here, on the client, rather than in a restart loop on the workers.
    artifact = OnnxScorer(cfg.model_dir, ["CPUExecutionProvider"], int8=bool(cfg.model_int8)).artifact
    model_version = f"{artifact.name}/{artifact.version}"
    # Absolute: the workers resolve a relative path against their own working directory.
    model_dir = str(Path(cfg.model_dir).resolve())
    t_env = StreamTableEnvironment.create(env, environment_settings=table_settings(cfg))
    if cfg.source_idle_timeout_ms:
        # A partition without records for this long stops holding the watermark back (jobs/config.py).
        t_env.get_config().set("table.exec.source.idle-timeout", f"{cfg.source_idle_timeout_ms} ms")

    # One source over both input topics, with per-partition watermarks on the record timestamp:
    # a request is released once every partition of both topics has passed its timestamp.
    t_env.execute_sql(raw_source_ddl(cfg, "rerank_input", f"{cfg.events_topic};{cfg.requests_topic}", watermark=True))
    t_env.execute_sql(keyed_sink_ddl(cfg, "rerank_output", cfg.output_topic))
    t_env.execute_sql(value_sink_ddl(cfg, "rerank_dead_letters", cfg.dead_letter_topic))

    if cfg.scoring == "keyed":
        user_key = "COALESCE(JSON_VALUE(CAST(`value` AS STRING), '$.user_id'), '')"
        if cfg.pseudonymize_key:
            # HMAC in the JVM, before keying: raw ids never become state keys (udfs/identity.py).
            create_java_function(t_env, "PSEUDONYM", PSEUDONYM_CLASS)
            user_key = f"PSEUDONYM({user_key}, '{sql_quote(cfg.pseudonymize_key)}')"
        # (user_id, or its pseudonym; '' when unreadable, (topic, partition, offset, record timestamp, value, key))
        keyed = keyed_by(t_env, t_env.sql_query(f"""
            SELECT {user_key} AS k,
                   ROW(`topic`, `partition`, `offset`, `ts`, `value`, `key`) AS r
            FROM rerank_input"""))
        control = _broadcast_inputs(t_env, cfg).broadcast(MODEL_STATE, EMBEDDING_STATE, TREND_STATE)
        # (user_id, ranked-list JSON)
        ranked = (keyed.connect(control)
                  .process(RerankFunction(cfg.events_topic, cfg.requests_topic, cfg.limits, model_dir,
                                          cfg.providers, cfg.onnx_threads, bool(cfg.model_int8),
                                          cfg.decay_half_life_ms, cfg.state_ttl_ms, cfg.request_hold_ms,
                                          cfg.scoring_timeout_ms, bool(cfg.pseudonymize_key), faults,
                                          cfg.embeddings_topic, cfg.presenting, cfg.trends_topic),
                           output_type=KEYED_VALUE)
                  .name("rerank").uid("rerank"))
        dead_letters = ranked.get_side_output(DEAD_LETTERS)  # (dead-letter JSON,)
    else:
        ranked, dead_letters = _pandas_path(t_env, cfg, artifact.max_len, model_dir, model_version)

    attach_inserts(t_env, [("rerank_output", t_env.from_data_stream(ranked)),
                           ("rerank_dead_letters", t_env.from_data_stream(dead_letters))])
    log.info("pipeline built: %s + %s -> %s (dead letters -> %s), model %s%s, %s scoring, parallelism %d, %s",
             cfg.events_topic, cfg.requests_topic, cfg.output_topic, cfg.dead_letter_topic, model_version,
             " int8" if cfg.model_int8 else "", cfg.scoring, cfg.parallelism, cfg.delivery_guarantee)
    return t_env


def _pandas_path(t_env: StreamTableEnvironment, cfg: JobConfig, max_len: int, model_dir: str,
                 model_version: str) -> tuple[DataStream, DataStream]:
    """parse -> key_by -> UserState -> pandas UDF (one ONNX call per Arrow batch) -> ranked list."""
    # (topic, partition, offset, record timestamp, value, key)
    raw = to_data_stream(t_env, t_env.from_path("rerank_input").select(
        col("topic"), col("partition"), col("offset"), col("ts"), col("value"), col("key")))
    parsed = raw.process(ParseRecords(cfg.events_topic, cfg.requests_topic, cfg.limits),
                         output_type=Types.PICKLED_BYTE_ARRAY()).name("parse").uid("parse")
    # (request_id, user_id, hist_items[<=L], hist_events[<=L], candidates[C], k, history_len, ts)
    scoring_rows = (parsed
                    .key_by(lambda r: r[1].user_id, key_type=Types.STRING())
                    .process(UserState(max_len, cfg.decay_half_life_ms, cfg.state_ttl_ms, cfg.request_hold_ms,
                                       cfg.limits.event_types),
                             output_type=SCORING_ROW)
                    .name("user-state").uid("user-state"))
    score = rank_scorer(model_dir, cfg.providers, cfg.onnx_threads)
    scored = t_env.from_data_stream(scoring_rows).add_columns(
        score(col("hist_items"), col("hist_events"), col("candidates")).alias("scores"))
    # (user_id, ranked-list JSON)
    ranked = (to_data_stream(t_env, scored)
              .map(AssembleRankedList(model_version), output_type=KEYED_VALUE).name("ranked-list").uid("ranked-list"))
    return ranked, parsed.get_side_output(DEAD_LETTERS)


def running(cfg: JobConfig, faults: Faults | None = None, restore_from: str | None = None) -> ContextManager[JobClient]:
    """The ranking job on the local minicluster in the background (tests, tools); cancelled on exit.
    `faults`: test-only fault injection; `restore_from`: a savepoint or retained checkpoint."""
    return running_job(cfg, lambda env, c: build_pipeline(env, c, faults), restore_from)


def main(argv: Sequence[str] | None = None) -> None:
    run_main(JobConfig, build_pipeline, argv)


if __name__ == "__main__":
    main()
