"""The feedback job: ranked lists (impressions) joined with what users did next -> labelled samples.

    ranked-lists ── one row per shown item (UNNEST WITH ORDINALITY: position) ──┐
                                                                                 ├─ LEFT interval join, in the JVM:
    user-events  ── actions (user_id, item_id, event, ts) ──────────────────────┘  same user and item, action
                                                                                    time in [shown, shown + window]
      -> training-samples (key user_id): one row per shown item with no action in the window, or one
         per (shown item, action): request_id, user_id, item_id, position, score, model_version, arm,
         event, clicked, converted, latency_ms, shown_at, window_ms

Times: a list is shown at its `emitted_at` (or, with `--feedback-time ts`, at its request's `ts`,
on the events' clock), an action happens at its `ts` (both epoch ms in the topic contract); watermarks allow `--feedback-lateness-ms` of disorder. A shown item without an
action is written once the watermark of both inputs passes shown + window: quiet input partitions
hold it back unless `--feedback-idle-timeout-ms` lets them go idle.

Run: `python -m jobs.feedback_job --help`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import ContextManager, Sequence

if __package__ in (None, ""):  # `flink run -py jobs/feedback_job.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import JobClient
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from jobs.config import FeedbackConfig
from jobs.kafka_tables import kafka_options, sink_options, sql_quote
from jobs.runner import run_main, running_job, table_settings


def _names(csv: str) -> str:
    """'click,view' -> "'click', 'view'" for an SQL IN list."""
    return ", ".join(f"'{sql_quote(n.strip())}'" for n in csv.split(",") if n.strip())


def sql_interval(ms: int) -> str:
    """Milliseconds as an SQL day-time interval literal: 1_800_000 -> INTERVAL '0 00:30:00.000' DAY TO SECOND(3)."""
    seconds, millis = divmod(int(ms), 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"INTERVAL '{days} {hour:02d}:{minute:02d}:{sec:02d}.{millis:03d}' DAY TO SECOND(3)"


def samples_query(cfg: FeedbackConfig) -> str:
    """The INSERT that writes training samples (pure: the SQL text, tested without a JVM)."""
    return f"""
        INSERT INTO training_samples
        SELECT i.user_id, i.request_id, i.user_id, s.item_id, CAST(s.pos AS INT), s.score, i.model_version,
               COALESCE(i.arm, 'main'), a.event,
               COALESCE(a.event IN ({_names(cfg.click_events)}), FALSE),
               COALESCE(a.event IN ({_names(cfg.conversion_events)}), FALSE),
               a.ts - i.{cfg.feedback_time}, i.{cfg.feedback_time}, CAST({cfg.feedback_window_ms} AS BIGINT)
        FROM impressions AS i
        CROSS JOIN UNNEST(i.items) WITH ORDINALITY AS s(item_id, score, pos)
        LEFT JOIN actions AS a
          ON a.user_id = i.user_id AND a.item_id = s.item_id
         AND a.rt BETWEEN i.rt AND i.rt + {sql_interval(cfg.feedback_window_ms)}"""


def build_pipeline(env: StreamExecutionEnvironment, cfg: FeedbackConfig) -> StreamTableEnvironment:
    """Wire the feedback join onto `env` (SQL only: it runs in the JVM, no Python worker)."""
    t_env = StreamTableEnvironment.create(env, environment_settings=table_settings(cfg))
    if cfg.feedback_idle_timeout_ms:
        t_env.get_config().set("table.exec.source.idle-timeout", f"{cfg.feedback_idle_timeout_ms} ms")
    lateness = sql_interval(cfg.feedback_lateness_ms)
    source = {'properties.group.id': cfg.group_id, 'properties.auto.offset.reset': 'earliest',
              'scan.startup.mode': cfg.startup_mode, 'format': 'json',
              # Malformed records are the ranking job's dead letters already; here they are skipped.
              'json.ignore-parse-errors': 'true', 'json.fail-on-missing-field': 'false'}
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE impressions (
            request_id STRING, user_id STRING,
            items ARRAY<ROW<item_id STRING, score DOUBLE>>,
            model_version STRING, arm STRING, ts BIGINT, emitted_at BIGINT,
            rt AS TO_TIMESTAMP_LTZ({cfg.feedback_time}, 3),
            WATERMARK FOR rt AS rt - {lateness}
        ) WITH ({kafka_options(cfg, cfg.output_topic, **source)})""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE actions (
            user_id STRING, item_id STRING, event STRING, ts BIGINT,
            rt AS TO_TIMESTAMP_LTZ(ts, 3),
            WATERMARK FOR rt AS rt - {lateness}
        ) WITH ({kafka_options(cfg, cfg.events_topic, **source)})""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE training_samples (
            k STRING, request_id STRING, user_id STRING, item_id STRING, `position` INT, score DOUBLE,
            model_version STRING, arm STRING, event STRING, clicked BOOLEAN, converted BOOLEAN,
            latency_ms BIGINT, shown_at BIGINT, window_ms BIGINT
        ) WITH ({sink_options(cfg, cfg.samples_topic, **{
            'key.format': 'raw', 'key.fields': 'k', 'value.format': 'json',
            'value.fields-include': 'EXCEPT_KEY'})})""")
    statements = t_env.create_statement_set()
    statements.add_insert_sql(samples_query(cfg))
    statements.attach_as_datastream()
    return t_env


def running(cfg: FeedbackConfig) -> ContextManager[JobClient]:
    """The feedback job on the local minicluster in the background; cancelled on exit."""
    return running_job(cfg, build_pipeline)


def main(argv: Sequence[str] | None = None) -> None:
    run_main(FeedbackConfig, build_pipeline, argv)


if __name__ == "__main__":
    main()
