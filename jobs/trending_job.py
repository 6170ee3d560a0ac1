"""The trending job: decayed event counts per item (and per category) -> `item-trends`.

    Kafka (user-events; per-partition watermarks on the record timestamp)
      -> key by item_id (extracted in SQL, keyed in the JVM)
      -> ItemTrends (thread mode): parse/validate -(bad)-> dead-letters; the item's DecayedCount
         (udfs/trending.py) in keyed state; an event-time timer writes the item's record at most
         once per --emit-interval-ms
      -> Kafka (item-trends, key = item_id: compacted, the latest count per item)

    With --catalog-topic: item-catalog (keyed by item_id too) is connected to the events, so each
    item knows its categories; every counted event also goes (category, weight, ts) to
    CategoryTrends, keyed by category, which writes scope 'category' records (key 'category:<name>')
    on the same throttle.

The ranking job reads item-trends (broadcast) and blends model and trend (udfs/trending.py).

Run: `python -m jobs.trending_job --help` (locally) or `flink run -py jobs/trending_job.py` (cluster).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import ContextManager, Sequence

if __package__ in (None, ""):  # `flink run -py jobs/trending_job.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import JobClient, Types
from pyflink.datastream import KeyedStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from jobs.config import TrendConfig
from jobs.kafka_tables import keyed_by, keyed_sink_ddl, raw_source_ddl, value_sink_ddl
from jobs.planning import Insert, attach_inserts
from jobs.runner import run_main, running_job, table_settings
from udfs.functions import DEAD_LETTERS, KEYED_VALUE
from udfs.trend_functions import CATEGORY_COUNTS, CatalogItemTrends, CategoryTrends, ItemTrends

log = logging.getLogger(__name__)

# How long the catalog may go without records before it stops holding back the operator's
# watermark: the catalog is not timed data, only the events' clock should drive the emits.
CATALOG_IDLE_TIMEOUT = "1 s"


def _keyed_by_item(t_env: StreamTableEnvironment, table: str, item_key: str) -> KeyedStream:
    """(topic, partition, offset, record timestamp, value, key) rows of `table`, keyed by `item_key` (SQL)."""
    return keyed_by(t_env, t_env.sql_query(f"""
        SELECT {item_key} AS k, ROW(`topic`, `partition`, `offset`, `ts`, `value`, `key`) AS r
        FROM {table}"""))


def build_pipeline(env: StreamExecutionEnvironment, cfg: TrendConfig) -> StreamTableEnvironment:
    """Wire the whole job onto `env`; the caller runs `env.execute(...)` or `execute_async`."""
    t_env = StreamTableEnvironment.create(env, environment_settings=table_settings(cfg))
    if cfg.source_idle_timeout_ms:
        # A partition without records for this long stops holding the watermark (and the emits) back.
        t_env.get_config().set("table.exec.source.idle-timeout", f"{cfg.source_idle_timeout_ms} ms")
    t_env.execute_sql(raw_source_ddl(cfg, "trend_events", cfg.events_topic, watermark=True))
    t_env.execute_sql(keyed_sink_ddl(cfg, "trends_output", cfg.trends_topic))
    t_env.execute_sql(value_sink_ddl(cfg, "trend_dead_letters", cfg.dead_letter_topic))

    # (item_id; '' when unreadable (bad records, forget records), raw record), keyed by item_id
    events = _keyed_by_item(t_env, "trend_events", "COALESCE(JSON_VALUE(CAST(`value` AS STRING), '$.item_id'), '')")
    args = (cfg.limits, cfg.weights, cfg.half_life_ms, cfg.emit_interval_ms, cfg.state_ttl_ms)
    if cfg.catalog_topic:
        # Watermarks on the catalog's record timestamps, idle when quiet: it never runs ahead of the
        # events' clock while active and stops holding it back once read.
        t_env.execute_sql(raw_source_ddl(cfg, "trend_catalog", cfg.catalog_topic, watermark=True,
                                         **{"scan.watermark.idle-timeout": CATALOG_IDLE_TIMEOUT}))
        # A tombstone has no value: its Kafka key is the item.
        catalog = _keyed_by_item(t_env, "trend_catalog",
                                 "COALESCE(JSON_VALUE(CAST(`value` AS STRING), '$.item_id'), CAST(`key` AS STRING), '')")
        # (item_id, item-trends JSON); (category, weight, ts, logged) -> CATEGORY_COUNTS
        items = events.connect(catalog).process(CatalogItemTrends(*args), output_type=KEYED_VALUE)
    else:
        items = events.process(ItemTrends(*args), output_type=KEYED_VALUE)
    items = items.name("item-trends").uid("item-trends")

    inserts: list[Insert] = [("trends_output", t_env.from_data_stream(items)),
                             ("trend_dead_letters", t_env.from_data_stream(items.get_side_output(DEAD_LETTERS)))]
    if cfg.catalog_topic:
        # ('category:<name>', item-trends JSON)
        categories = (items.get_side_output(CATEGORY_COUNTS)
                      .key_by(lambda row: row[0], key_type=Types.STRING())
                      .process(CategoryTrends(cfg.half_life_ms, cfg.emit_interval_ms, cfg.state_ttl_ms),
                               output_type=KEYED_VALUE)
                      .name("category-trends").uid("category-trends"))
        inserts.append(("trends_output", t_env.from_data_stream(categories)))
    attach_inserts(t_env, inserts)
    log.info("pipeline built: %s%s -> %s (dead letters -> %s), half-life %d ms, emit interval %d ms, parallelism %d",
             cfg.events_topic, f" + {cfg.catalog_topic}" if cfg.catalog_topic else "", cfg.trends_topic,
             cfg.dead_letter_topic, cfg.half_life_ms, cfg.emit_interval_ms, cfg.parallelism)
    return t_env


def running(cfg: TrendConfig) -> ContextManager[JobClient]:
    """The trending job on the local minicluster in the background (tests, tools); cancelled on exit."""
    return running_job(cfg, build_pipeline)


def main(argv: Sequence[str] | None = None) -> None:
    run_main(TrendConfig, build_pipeline, argv)


if __name__ == "__main__":
    main()
