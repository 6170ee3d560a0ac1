"""The feedback job: ranked lists (impressions) joined with what users did next -> labelled samples.

    ranked-lists ── one row per shown item (UNNEST WITH ORDINALITY: position) ──┐
                                                                                 ├─ LEFT interval join, in the JVM:
    user-events  ── actions (user_id, item_id, event, ts) ──────────────────────┘  same user and item, action
                                                                                    time in [shown, shown + window]
      -> training-samples (key user_id): one row per shown item with no action in the window, or one
         per (shown item, action): request_id, user_id, item_id, position, score, model_version, arm,
         event, clicked, converted, latency_ms, shown_at, window_ms
      -> with `--online-metrics-k` (10; 0 = off), each list once: its own row plus the join's matched
         rows, per list in a 1-minute tumbling window on the impression time -> ONLINE_METRICS (a Java
         function: counters and ratios per arm and model version in the job's metrics, as
         jobs/online_eval.py feedback_metrics computes them) -> blackhole

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
from jobs.planning import Insert, attach_inserts, create_java_function
from jobs.runner import run_main, running_job, table_settings

METRICS_CLASS = "rerank.udf.OnlineMetrics"  # udfs/java/rerank/udf/OnlineMetrics.java


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


def shown_items_query(cfg: FeedbackConfig) -> str:
    """The join, as the view `shown_items` (pure: the SQL text, tested without a JVM): one row per
    shown item with no action in the window, or one per (shown item, action). Both sinks read it,
    so the join is planned once. `shown_rt`, the impression's time, stays a time attribute (an
    interval join keeps those of its inputs)."""
    return f"""
        SELECT i.request_id, i.user_id, s.item_id, CAST(s.pos AS INT) AS `position`, s.score, i.model_version,
               COALESCE(i.arm, 'main') AS arm, a.event,
               COALESCE(a.event IN ({_names(cfg.click_events)}), FALSE) AS clicked,
               COALESCE(a.event IN ({_names(cfg.conversion_events)}), FALSE) AS converted,
               a.ts - i.{cfg.feedback_time} AS latency_ms, i.{cfg.feedback_time} AS shown_at, i.rt AS shown_rt
        FROM impressions AS i
        CROSS JOIN UNNEST(i.items) WITH ORDINALITY AS s(item_id, score, pos)
        LEFT JOIN actions AS a
          ON a.user_id = i.user_id AND a.item_id = s.item_id
         AND a.rt BETWEEN i.rt AND i.rt + {sql_interval(cfg.feedback_window_ms)}"""


def samples_query(cfg: FeedbackConfig) -> str:
    """The INSERT that writes training samples (pure: the SQL text, tested without a JVM)."""
    return f"""
        INSERT INTO training_samples
        SELECT user_id, request_id, user_id, item_id, `position`, score, model_version, arm, event, clicked,
               converted, latency_ms, shown_at, CAST({cfg.feedback_window_ms} AS BIGINT)
        FROM shown_items"""


# Size of the tumbling windows that gather a list's rows. Every row of a list carries the list's
# impression time, so any size gathers each list whole; a window's lists are counted once the
# join's output watermark (inputs' watermark - feedback window) passes its end, so the size adds
# at most this much delay. Copies of one list (same request_id) in one window count once.
METRICS_WINDOW = "INTERVAL '1' MINUTE"


def list_rows_query(cfg: FeedbackConfig) -> str:
    """The rows the per-list metrics are aggregated from, as the view `list_rows` (pure: SQL text):
    one per shown list, from the impressions themselves, plus the join's matched rows (an action
    on a shown item), with the item's DCG gain when it is a click at position <= k.

    Not the join's null-padded rows ("no action on this item"): the interval join holds its output
    watermark back by the feedback window only, and emits a padded row when its cleanup timer
    fires. That is on time while `table.exec.interval-join.min-cleanup-interval` is 0 (Flink 2.3's
    default) and one (user, item)'s impressions arrive in time order; otherwise the row comes
    behind the watermark, and a window that has fired drops it: the list would go uncounted
    (measured: with a 5 s cleanup interval, lists shown in the last seconds of a window were
    lost). The list's own row is on time by its source's watermark (the union's is the join's, the
    slower), and so is a matched row, emitted when its action (or its impression) arrives. A list
    with no items has no samples and is left out, as feedback_metrics does."""
    hit = f"clicked AND `position` <= {cfg.online_metrics_k}"
    return f"""
        SELECT request_id, model_version, COALESCE(arm, 'main') AS arm, CAST(NULL AS INT) AS hit,
               CAST(NULL AS DOUBLE) AS gain, FALSE AS converted, rt AS shown_rt
        FROM impressions
        WHERE CARDINALITY(items) > 0
        UNION ALL
        SELECT request_id, model_version, arm, CASE WHEN {hit} THEN `position` END,
               CASE WHEN {hit} THEN 1.0E0 / LOG2(`position` + 1) END, converted, shown_rt
        FROM shown_items
        WHERE event IS NOT NULL"""


def metrics_query(cfg: FeedbackConfig) -> str:
    """The INSERT that counts each shown list once in ONLINE_METRICS (udfs/java/rerank/udf/OnlineMetrics.java):
    (model_version, arm, distinct clicked positions <= k, their DCG, any conversion); pure: SQL text.
    DISTINCT: an item acted on twice (click, then purchase) is one hit at one position."""
    return f"""
        INSERT INTO online_metrics
        SELECT ONLINE_METRICS(model_version, arm, CAST(COUNT(DISTINCT hit) AS INT),
                              COALESCE(SUM(DISTINCT gain), 0.0E0), COUNT(CASE WHEN converted THEN 1 END) > 0)
        FROM TABLE(TUMBLE(TABLE list_rows, DESCRIPTOR(shown_rt), {METRICS_WINDOW}))
        GROUP BY window_start, window_end, request_id, model_version, arm"""


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
    t_env.create_temporary_view("shown_items", t_env.sql_query(shown_items_query(cfg)))
    inserts: list[Insert] = [samples_query(cfg)]
    if cfg.online_metrics_k:
        create_java_function(t_env, "ONLINE_METRICS", METRICS_CLASS)
        t_env.create_temporary_view("list_rows", t_env.sql_query(list_rows_query(cfg)))
        t_env.execute_sql("CREATE TEMPORARY TABLE online_metrics (counted INT) WITH ('connector' = 'blackhole')")
        inserts.append(metrics_query(cfg))
    attach_inserts(t_env, inserts)
    return t_env


def running(cfg: FeedbackConfig) -> ContextManager[JobClient]:
    """The feedback job on the local minicluster in the background; cancelled on exit."""
    return running_job(cfg, build_pipeline)


def main(argv: Sequence[str] | None = None) -> None:
    run_main(FeedbackConfig, build_pipeline, argv)


if __name__ == "__main__":
    main()
