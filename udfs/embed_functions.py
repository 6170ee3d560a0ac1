"""The item-embedding job's Flink functions: thin wrappers around udfs/embeddings.py.

    ParseCatalog (DataStream, thread mode): Kafka record -> (item_id, text, text_sha256, ts,
        topic, partition, offset), text null for a tombstone; bad records -> DEAD_LETTERS
    SkipUnchanged (keyed by item_id): drops items whose text this encoder already embedded
    EmbedItems (pandas UDF, process mode): one tokenizer + ONNX Runtime call per Arrow batch ->
        the item-embeddings JSON, or a dead-letter JSON for a row the encoder failed on
    RouteEmbeddings (DataStream): embeddings -> (item_id, JSON); failures -> DEAD_LETTERS
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from udfs.embeddings import (TextEmbedder, content_fingerprint, embedding_record, item_text, parse_catalog_item,
                             text_sha256, tombstone_item)
from udfs.errors import InvalidRecord
from udfs.functions import DEAD_LETTERS, DeadLetters, epoch_ms, state_ttl
from udfs.records import Limits, dead_letter

log = logging.getLogger(__name__)
METRIC_GROUP = "item_embed"

# One catalog item ready to embed, with where it came from (for a dead letter if the encoder fails on it).
CATALOG_ROW = Types.ROW_NAMED(
    ["item_id", "text", "text_sha256", "ts", "topic", "partition", "offset"],
    [Types.STRING(), Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.INT(), Types.LONG()])
# The UDF's output starts with this exactly when it is an item-embeddings record (json.dumps key order).
_EMBEDDING_PREFIX = '{"item_id":'


class ParseCatalog(ProcessFunction):
    """(topic, partition, offset, timestamp, value, key) -> CATALOG_ROW; invalid records -> DEAD_LETTERS."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.dead = DeadLetters(group)
        self.items = group.counter("catalog_items")
        self.tombstones = group.counter("catalog_tombstones")

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterable:
        topic, partition, offset, logged, payload, key = value[0], value[1], value[2], value[3], value[4], value[5]
        deleted = tombstone_item(payload, key, max_id_bytes=self.limits.max_id_bytes)
        if deleted is not None:
            # Through the UDF like an update (text null), so it cannot overtake the item's previous update.
            self.tombstones.inc()
            yield Row(deleted, None, None, epoch_ms(logged), topic, partition, offset)
            return
        try:
            item = parse_catalog_item(payload, key, max_id_bytes=self.limits.max_id_bytes,
                                      max_value_bytes=self.limits.max_value_bytes)
        except InvalidRecord as exc:
            yield DEAD_LETTERS, self.dead.record(topic, partition, offset, exc, payload)
            return
        self.items.inc()
        text = item_text(item)
        ts = item.ts if item.ts is not None else epoch_ms(logged)
        yield Row(item.item_id, text, text_sha256(text), ts, topic, partition, offset)


class SkipUnchanged(KeyedProcessFunction):
    """Keyed by item_id: drops a catalog row whose text this encoder already embedded (a re-announced or
    replayed item), so only new or changed items reach the encoder. A tombstone clears the item.

    State: the item's content fingerprint (encoder + text hash), with a TTL: an item unchanged for
    longer than that is embedded once more. An item the encoder failed on and that is re-sent
    unchanged is skipped too (its dead letter is the record of it).
    """

    def __init__(self, encoder: str, ttl_ms: int) -> None:
        self.encoder = encoder
        self.ttl_ms = ttl_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.embedded = runtime_context.get_state(
            state_ttl(ValueStateDescriptor("embedded-content", Types.STRING()), self.ttl_ms))
        self.unchanged = runtime_context.get_metrics_group().add_group(METRIC_GROUP).counter("unchanged_items")

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        if value[1] is None:  # a tombstone: forget the item, pass the deletion on
            self.embedded.clear()
            yield value
            return
        fingerprint = content_fingerprint(self.encoder, value[2])
        if self.embedded.value() == fingerprint:
            self.unchanged.inc()
            return
        self.embedded.update(fingerprint)
        yield value


class EmbedItems(ScalarFunction):
    """pandas UDF: CATALOG_ROW columns -> Series of item-embeddings JSON (one encoder call per batch).

    Holds only strings when pickled; the ONNX session is created in `open()` on the worker. If a
    batch fails, its rows are retried one by one, and a row that still fails becomes a dead-letter
    JSON (RouteEmbeddings sends it to dead-letters): a fault never kills the job or drops an item
    silently.
    """

    def __init__(self, encoder_dir: str, providers: Sequence[str], threads: int, batch_size: int) -> None:
        self.encoder_dir = encoder_dir
        self.providers = list(providers)
        self.threads = threads
        self.batch_size = batch_size
        self.embedder: TextEmbedder | None = None

    def open(self, function_context: FunctionContext) -> None:
        self.embedder = TextEmbedder(self.encoder_dir, self.providers, self.threads)
        group = function_context.get_metric_group().add_group(METRIC_GROUP)
        # PyFlink has no Python histogram: totals, so rate(embedding_ms) / rate(embedding_batches) is the mean.
        self.batches = group.counter("embedding_batches")
        self.embedded = group.counter("embedded_items")
        self.total_ms = group.counter("embedding_ms")
        self.failures = group.counter("embedding_failures")
        group.add_group("encoder", self.embedder.name).gauge("encoder_loaded", lambda: 1)

    def eval(self, item_id: pd.Series, text: pd.Series, text_hash: pd.Series, ts: pd.Series, topic: pd.Series,
             partition: pd.Series, offset: pd.Series) -> pd.Series:
        start = time.perf_counter()
        out, failed = embed_batch(self.embedder, item_id.tolist(), text.tolist(), text_hash.tolist(),
                                  ts.tolist(), list(zip(topic, partition, offset)), self.batch_size)
        self.batches.inc()
        self.embedded.inc(sum(v is not None for v in out) - failed)
        self.failures.inc(failed)
        self.total_ms.inc(int(round((time.perf_counter() - start) * 1000)))
        return pd.Series(out, dtype=object)


def embed_batch(embedder: TextEmbedder, item_ids: list[str], texts: list[str | None], hashes: list[str | None],
                ts: list[int], sources: list[tuple[str, int, int]], batch_size: int) -> tuple[list[str | None], int]:
    """One UDF batch -> (one value per row, number of dead letters among them).

    A row's value is its item-embeddings JSON, None for a tombstone (text None: the item was
    deleted), or a dead-letter JSON if the encoder failed on it. If the batch fails, its rows are
    retried one by one, so one bad row cannot take the others down with it.
    """
    live = [i for i, t in enumerate(texts) if t is not None]
    live_texts = [texts[i] for i in live]
    try:
        vectors: list = list(embedder.embed(live_texts, batch_size))  # (N, D) float32 -> N rows
    except Exception:  # noqa: BLE001 - ORT/tokenizer fault: retried row by row, then dead-lettered
        log.exception("embedding a batch of %d items failed; retrying one by one", len(live_texts))
        vectors = [_embed_one(embedder, t) for t in live_texts]
    by_row = dict(zip(live, vectors))
    emitted_at = int(time.time() * 1000)
    out: list[str | None] = []
    failed = 0
    for i in range(len(texts)):
        vector = by_row.get(i)
        if vector is None:
            out.append(None)  # a tombstone passes through as one
        elif isinstance(vector, Exception):
            failed += 1
            topic, partition, offset = sources[i]
            out.append(dead_letter(topic, int(partition), int(offset),
                                   f"embed item: {type(vector).__name__}: {vector} [encoder_failed]",
                                   texts[i], reason="encoder_failed"))
        else:
            out.append(embedding_record(item_ids[i], embedder.name, vector, hashes[i], int(ts[i]), emitted_at))
    return out, failed


def _embed_one(embedder: TextEmbedder, text: str) -> np.ndarray | Exception:
    try:
        return embedder.embed([text])[0]
    except Exception as exc:  # noqa: BLE001 - returned, counted and dead-lettered by the caller
        log.exception("embedding one item failed")
        return exc


def item_embedder(encoder_dir: str, providers: Sequence[str], threads: int = 1, batch_size: int = 32):
    """The UDF to call in the Table API on CATALOG_ROW's columns, in order."""
    return udf(EmbedItems(encoder_dir, providers, threads, batch_size), result_type=DataTypes.STRING(),
               func_type="pandas")


class RouteEmbeddings(ProcessFunction):
    """(item_id, JSON | None) -> (item_id, JSON | None) for item-embeddings (None: a tombstone, which deletes
    the item's vector on the compacted topic); a dead-letter JSON -> DEAD_LETTERS."""

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterable:
        item_id, record = value[0], value[1]
        if record is None or record.startswith(_EMBEDDING_PREFIX):
            yield Row(item_id, record)
        else:
            yield DEAD_LETTERS, Row(record)
