"""The item-embedding job: new or changed items -> text embeddings, in seconds.

    Kafka (item-catalog, keyed by item_id)
      -> ParseCatalog (thread mode): validate, build the item's text (udfs/embeddings.py)
         -(bad)-> dead-letters
      -> key by item_id -> SkipUnchanged: only new or changed texts (state: encoder + text hash)
      -> EmbedItems, a pandas UDF (process mode): tokenizer + ONNX all-MiniLM-L6-v2, one call per
         Arrow batch -> item-embeddings JSON
      -> Kafka (item-embeddings, keyed by item_id: compacted, the latest vector per item)

The offline side (models/item_embeddings.py) embeds with the same text builder and TextEmbedder.

Run: `python -m jobs.item_embed_job --help` (locally) or `flink run -py jobs/item_embed_job.py` (cluster).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import ContextManager, Sequence

if __package__ in (None, ""):  # `flink run -py jobs/item_embed_job.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import JobClient, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyflink.table.expressions import col

from jobs.config import ItemEmbedConfig
from jobs.kafka_tables import keyed_sink_ddl, raw_source_ddl, value_sink_ddl
from jobs.planning import attach_inserts, to_data_stream
from jobs.runner import run_main, running_job, table_settings
from udfs.embed_functions import CATALOG_ROW, ParseCatalog, RouteEmbeddings, SkipUnchanged, item_embedder
from udfs.embeddings import read_encoder_meta
from udfs.functions import DEAD_LETTERS, KEYED_VALUE
from udfs.errors import ConfigError

log = logging.getLogger(__name__)

def check_encoder_dir(encoder_dir: str) -> str:
    """The encoder directory as an absolute path; refused on the client if incomplete (not in a worker restart loop)."""
    from udfs.embeddings import ENCODER_CONFIG_FILE, ENCODER_MODEL_FILE, ENCODER_TOKENIZER_FILE

    root = Path(encoder_dir).resolve()
    missing = [f for f in (ENCODER_MODEL_FILE, ENCODER_TOKENIZER_FILE, ENCODER_CONFIG_FILE) if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"text encoder {root} lacks {missing}: run `python -m models.text_encoder`")
    return str(root)


def build_pipeline(env: StreamExecutionEnvironment, cfg: ItemEmbedConfig) -> StreamTableEnvironment:
    """Wire the whole job onto `env`; the caller runs `env.execute(...)` or `execute_async`."""
    encoder_dir = check_encoder_dir(cfg.encoder_dir)
    encoder, _, _ = read_encoder_meta(Path(encoder_dir))
    t_env = StreamTableEnvironment.create(env, environment_settings=table_settings(cfg))
    t_env.execute_sql(raw_source_ddl(cfg, "catalog_input", cfg.catalog_topic))
    t_env.execute_sql(keyed_sink_ddl(cfg, "embeddings_output", cfg.embeddings_topic))
    t_env.execute_sql(value_sink_ddl(cfg, "embed_dead_letters", cfg.dead_letter_topic))

    # (topic, partition, offset, record timestamp, value, key)
    raw = to_data_stream(t_env, t_env.from_path("catalog_input").select(
        col("topic"), col("partition"), col("offset"), col("ts"), col("value"), col("key")))
    # (item_id, text, text_sha256, ts, topic, partition, offset)
    items = raw.process(ParseCatalog(cfg.limits), output_type=CATALOG_ROW).name("parse-catalog").uid("parse-catalog")
    changed = items
    if cfg.skip_unchanged:
        # the same rows, only new or changed items (and tombstones); per-item order kept by the keying
        changed = (items.key_by(lambda row: row[0], key_type=Types.STRING())
                   .process(SkipUnchanged(encoder, cfg.state_ttl_ms), output_type=CATALOG_ROW)
                   .name("skip-unchanged").uid("skip-unchanged"))
    embed = item_embedder(encoder_dir, cfg.providers, cfg.onnx_threads, cfg.embed_batch_size)
    # (item_id, item-embeddings JSON | dead-letter JSON)
    embedded = t_env.from_data_stream(changed).select(
        col("item_id"), embed(col("item_id"), col("text"), col("text_sha256"), col("ts"), col("topic"),
                              col("partition"), col("offset")).alias("v"))
    # (item_id, item-embeddings JSON); failures to the side output
    routed = (to_data_stream(t_env, embedded)
              .process(RouteEmbeddings(), output_type=KEYED_VALUE).name("route-embeddings").uid("route-embeddings"))

    attach_inserts(t_env, [("embeddings_output", t_env.from_data_stream(routed)),
                           ("embed_dead_letters", t_env.from_data_stream(items.get_side_output(DEAD_LETTERS))),
                           ("embed_dead_letters", t_env.from_data_stream(routed.get_side_output(DEAD_LETTERS)))])
    log.info("pipeline built: %s -> %s (dead letters -> %s), encoder %s, parallelism %d",
             cfg.catalog_topic, cfg.embeddings_topic, cfg.dead_letter_topic, encoder_dir, cfg.parallelism)
    return t_env


def create_item_topics(bootstrap: str, cfg: ItemEmbedConfig, partitions: int = 1) -> None:
    """Create the job's topics: item-catalog and item-embeddings compacted (the latest record per item_id).

    A topic that already exists is left as it is.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    compacted = {"cleanup.policy": "compact"}
    topics = [NewTopic(cfg.catalog_topic, partitions, 1, topic_configs=compacted),
              NewTopic(cfg.embeddings_topic, partitions, 1, topic_configs=compacted),
              NewTopic(cfg.dead_letter_topic, partitions, 1)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        for topic in topics:  # one by one: an existing dead-letters topic must not stop the others
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                log.info("topic %s exists", topic.name)
    finally:
        admin.close()


def running(cfg: ItemEmbedConfig) -> ContextManager[JobClient]:
    """Run the job on the local minicluster in the background; cancelled on exit."""
    return running_job(cfg, build_pipeline)


def main(argv: Sequence[str] | None = None) -> None:
    run_main(ItemEmbedConfig, build_pipeline, argv)


if __name__ == "__main__":
    main()
