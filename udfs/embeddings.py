"""Item text and item embeddings: the contracts of `item-catalog` and `item-embeddings`, and the encoder at run time.

One place for:
- the `item-catalog` record (``parse_catalog_item``): ``{"item_id": str, "title": str?, "text": str?,
  "categories": [str]?, "ts": int?}``, validated like the other topics (udfs/records.py: same
  size, JSON, id and ts checks, same reason codes); a record with no text at all is invalid;
- the text an item is embedded from (``item_text``): the Flink job and the offline side
  (models/item_embeddings.py) both build it here, so their vectors agree;
- the `item-embeddings` record (``embedding_record`` / ``decode_embedding``): keyed by item_id,
  so the topic can be compacted to the latest vector per item;
- ``TextEmbedder``: tokenizer (the `tokenizers` library, from the encoder's tokenizer.json) +
  ONNX Runtime session, texts -> (N, D) unit vectors. Used by the pandas UDF, the offline
  command and the export's parity gate.

Pure Python + numpy + onnxruntime + tokenizers; no Flink, no torch.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from udfs.errors import InvalidRecord
from udfs.records import (DEFAULT_MAX_ID_BYTES, DEFAULT_MAX_VALUE_BYTES, Reason, check_id, _decode, _field, _id,
                          _ts)

log = logging.getLogger(__name__)

# The served encoder directory (models/text_encoder.py writes it).
ENCODER_MODEL_FILE = "model.onnx"
ENCODER_TOKENIZER_FILE = "tokenizer.json"
ENCODER_CONFIG_FILE = "encoder.json"
ENCODER_INPUTS = ("input_ids", "attention_mask")  # (B, T) int64 each
EMBEDDING_OUTPUT = "sentence_embedding"  # (B, D) float32, unit L2 norm
EMBEDDING_ENCODING = "base64-float32-le"
MAX_CATEGORIES = 100


@dataclass(frozen=True)
class CatalogItem:
    """A new or changed item, as announced on `item-catalog` (and as the offline catalog adapters build it)."""

    item_id: str
    title: str | None = None
    text: str | None = None
    categories: tuple[str, ...] = ()
    ts: int | None = None


def _clean(s: str | None) -> str:
    """Whitespace runs -> one space, trimmed: 'Heat  (1995)\\n' and 'Heat (1995)' are the same text."""
    return " ".join(s.split()) if s else ""


def item_text(item: CatalogItem) -> str:
    """The text an item is embedded from: 'title. text. category, category' (empty parts left out)."""
    categories = ", ".join(c for c in map(_clean, item.categories) if c)
    return ". ".join(p for p in (_clean(item.title), _clean(item.text), categories) if p)


def text_sha256(text: str) -> str:
    """Hex digest of the embedded text: a consumer can tell whether a vector is still current."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_catalog_item(raw: bytes | str | None, key: bytes | str | None = None, *,
                       max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
                       max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> CatalogItem:
    """Parse an `item-catalog` value; raises InvalidRecord (reasons as udfs/records.py's). Extra fields are ignored.

    A non-null Kafka key must equal `item_id` (the topic is keyed, and compacted, by item).
    """
    step = "parse item-catalog"
    obj = _decode(raw, step, max_value_bytes)
    item_id = _id(obj, "item_id", step, max_id_bytes)
    title = _field(obj, "title", str, step, required=False)
    text = _field(obj, "text", str, step, required=False)
    categories = _field(obj, "categories", list, step, required=False) or []
    if len(categories) > MAX_CATEGORIES:
        raise InvalidRecord(step, f"field 'categories' has {len(categories)} entries, above {MAX_CATEGORIES}",
                            Reason.WRONG_TYPE)
    for i, c in enumerate(categories):
        if not isinstance(c, str):
            raise InvalidRecord(step, f"field 'categories[{i}]' must be str, got {c!r:.80}", Reason.WRONG_TYPE)
    ts = _ts(obj, step) if obj.get("ts") is not None else None
    item = CatalogItem(item_id=item_id, title=title, text=text, categories=tuple(categories), ts=ts)
    if not item_text(item):
        raise InvalidRecord(step, "no text: 'title', 'text' and 'categories' are all absent or blank",
                            Reason.MISSING_FIELD)
    if key is not None:
        _check_item_key(key, item_id)
    return item


def tombstone_item(raw: bytes | str | None, key: bytes | str | None, *,
                   max_id_bytes: int = DEFAULT_MAX_ID_BYTES) -> str | None:
    """The item_id a catalog tombstone deletes, or None if the record is not a tombstone.

    A null value under a valid item_id key is a deletion on the compacted `item-catalog`: the job
    forwards it as a tombstone on `item-embeddings`, so compaction drops the item's vector too.
    A null value without a usable key stays invalid (`null_value`, from parse_catalog_item).
    """
    if raw is not None or key is None:
        return None
    try:
        item_id = bytes(key).decode("utf-8") if isinstance(key, (bytes, bytearray, memoryview)) else key
        return check_id(item_id, "Kafka key", "catalog tombstone", max_id_bytes)
    except (UnicodeDecodeError, InvalidRecord):
        return None


def _check_item_key(key: bytes | str, item_id: str) -> None:
    """A non-null Kafka key must be the item_id: the topic is compacted by key, per item."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            key = bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            key = repr(bytes(key))  # never equal to a valid id
    if key != item_id:
        raise InvalidRecord("check key", f"Kafka key {key!r:.80} differs from field 'item_id' {item_id!r:.80}",
                            Reason.KEY_MISMATCH)


def encode_vector(vector: np.ndarray) -> str:
    """(D,) float -> base64 of little-endian float32 (2 KB of JSON for 384 dims, a third of a number list)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embedding_record(item_id: str, model: str, vector: np.ndarray, text_hash: str, ts: int | None,
                     emitted_at: int) -> str:
    """The `item-embeddings` value (JSON); the Kafka key is `item_id`.

    `model` is '<encoder name>/<version>', `ts` the catalog record's `ts` (else its Kafka timestamp),
    `emitted_at` when the job wrote it (epoch ms).
    """
    return json.dumps({"item_id": item_id, "model": model, "dim": int(vector.shape[0]),
                       "encoding": EMBEDDING_ENCODING, "embedding": encode_vector(vector),
                       "text_sha256": text_hash, "ts": ts, "emitted_at": emitted_at}, separators=(",", ":"))


def decode_embedding(record: dict[str, Any]) -> np.ndarray:
    """An `item-embeddings` value (parsed JSON) -> (dim,) float32; ValueError when it is not one."""
    if record.get("encoding") != EMBEDDING_ENCODING:
        raise ValueError(f"unknown embedding encoding {record.get('encoding')!r}")
    vector = np.frombuffer(base64.b64decode(record["embedding"], validate=True), dtype="<f4")
    if vector.shape != (record["dim"],):
        raise ValueError(f"embedding of item {record.get('item_id')!r} has {vector.size} values, dim says "
                         f"{record['dim']}")
    return vector.astype(np.float32)


def load_tokenizer(path: str | Path, max_tokens: int):
    """A `tokenizers.Tokenizer` from tokenizer.json: truncation at `max_tokens`, padding to the batch's longest.

    The file ships fixed 128-token padding; sentence-transformers overrides it with its own
    max_seq_length and pads per batch, and so does this (a title is ~10 tokens).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def tokenize(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """texts -> (input_ids, attention_mask), each (B, T) int64, T = the batch's longest (<= max_tokens)."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def read_encoder_meta(root: Path) -> tuple[str, int, int]:
    """(name '<encoder>/<version>', dim, max_tokens) from an encoder directory's encoder.json; ConfigError if absent."""
    from udfs.errors import ConfigError

    try:
        meta = json.loads((Path(root) / ENCODER_CONFIG_FILE).read_text())
        return f"{meta['name']}/{meta['version']}", int(meta["dim"]), int(meta["max_tokens"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{root} is not a text encoder directory (python -m models.text_encoder builds "
                          f"one): {exc}") from exc


def content_fingerprint(encoder: str, text_hash: str) -> str:
    """What an item's vector is a function of: the encoder and the text. Equal -> re-embedding is a no-op."""
    return f"{encoder}:{text_hash}"


class TextEmbedder:
    """The served encoder: texts -> (N, D) float32 unit vectors. Usable without Flink."""

    def __init__(self, encoder_dir: str, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int = 1) -> None:
        import onnxruntime as ort  # here, not at import: Flink workers import this module before open()

        root = Path(encoder_dir)
        self.name, self.dim, self.max_tokens = read_encoder_meta(root)
        self.tokenizer = load_tokenizer(root / ENCODER_TOKENIZER_FILE, self.max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        available = set(ort.get_available_providers())
        # CUDA is listed wherever onnxruntime-gpu is installed; udfs.scoring knows whether it really loads.
        from udfs.scoring import usable_providers

        wanted = usable_providers([p for p in providers if p in available])
        self.session = ort.InferenceSession(str(root / ENCODER_MODEL_FILE), options, providers=wanted)
        log.info("text encoder %s loaded from %s on %s", self.name, root, ", ".join(self.session.get_providers()))

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(N,) texts -> (N, D) float32, in input order.

        Texts are run in batches of `batch_size` sorted by token count, so a batch pads little.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        ids, mask = tokenize(self.tokenizer, texts)  # (N, T) each, T = the longest
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            t = int(lengths[rows].max())
            out[rows] = self.session.run([EMBEDDING_OUTPUT], {"input_ids": ids[rows, :t],
                                                              "attention_mask": mask[rows, :t]})[0]
        return out


class EmbeddingTable:
    """The latest vector per item, as a scoring instance keeps it from the compacted `item-embeddings` topic.

    Pure (no Flink): a broadcast or keyed operator calls `update` per record (`delete` per tombstone)
    and `lookup` per batch.
    Records of another encoder (`model`) are refused: vectors of two encoders are not comparable.
    """

    def __init__(self, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim
        self._rows: dict[str, int] = {}  # item_id -> row
        self._ids: list[str] = []  # row -> item_id
        self._matrix = np.zeros((0, dim), np.float32)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def update(self, value: str | bytes | dict[str, Any]) -> str:
        """Apply one `item-embeddings` value; returns its item_id. ValueError if it is not a valid record
        of this table's encoder."""
        record = json.loads(value) if isinstance(value, (str, bytes)) else value
        if record.get("model") != self.model:
            raise ValueError(f"embedding of model {record.get('model')!r}, this table holds {self.model!r}")
        vector = decode_embedding(record)
        if vector.shape != (self.dim,):
            raise ValueError(f"embedding has {vector.size} values, the table {self.dim}")
        if not np.isfinite(vector).all():
            raise ValueError(f"embedding of item {record.get('item_id')!r} has non-finite values")
        item_id = record["item_id"]
        row = self._rows.get(item_id)
        if row is None:
            if self._size == len(self._matrix):  # grow by doubling: amortized O(1) per new item
                grown = np.zeros((max(16, 2 * len(self._matrix)), self.dim), np.float32)
                grown[:self._size] = self._matrix[:self._size]
                self._matrix = grown
            row = self._rows[item_id] = self._size
            self._ids.append(item_id)
            self._size += 1
        self._matrix[row] = vector
        return item_id

    def delete(self, item_id: str) -> bool:
        """Forget an item (a tombstone on the topic); whether it was there. The last row moves into its slot."""
        row = self._rows.pop(item_id, None)
        if row is None:
            return False
        last = self._size - 1
        moved = self._ids.pop()  # the item in the last row
        if row != last:
            self._matrix[row] = self._matrix[last]
            self._rows[moved] = row
            self._ids[row] = moved
        self._size = last
        return True

    def lookup(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N,) ids -> (vectors (N, D) float32, zero rows for unknown ids; found (N,) bool)."""
        rows = np.fromiter(map(self._rows.get, item_ids, repeat(-1)), dtype=np.int64, count=len(item_ids))
        found = rows >= 0
        if self._size == 0:
            return np.zeros((len(item_ids), self.dim), np.float32), found
        out = self._matrix[np.where(found, rows, 0)]  # a copy (fancy indexing); unknown rows zeroed next
        out[~found] = 0.0
        return out, found
