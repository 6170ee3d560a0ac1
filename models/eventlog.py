"""Training input in the `user-events` contract: files (JSON Lines, Parquet) or the topic itself.

Every row is validated by the job's own parser (`udfs.records.parse_event` /
`event_from_object`): the same field names, id limits and `ts` range (epoch milliseconds) as
the topic contract, so what trains is what the job would have consumed. Event names are taken
from the data (`event_types=None`): any valid id. A bad row raises `DataError` naming the file
and line (or topic, partition and offset) and the field, unless ``skip_invalid`` is set: then it
is skipped and counted per reason (logged, and recorded in the description).

Order: files are read in sorted path order, rows in file order; a Kafka read is ordered by
(record timestamp, partition, offset). Each user's events are then ordered by (`ts`, input
position), and users by first appearance in the input. Nothing here knows any dataset.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import DataError
from udfs.errors import InvalidRecord
from udfs.records import DEFAULT_MAX_ID_BYTES, FORGET_EVENT, check_id, check_key, event_from_object, parse_event

log = logging.getLogger(__name__)

EVENT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet")
CATALOG_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".csv")
SHOWN_BAD_ROWS = 5  # bad rows logged one by one under --skip-invalid; the rest only counted


@dataclass(frozen=True)
class EventLog:
    """Interactions grouped per user (CSR); each user's ordered by (ts, input position).

    Item and event names are codes into ``item_ids`` / ``event_names`` (distinct strings, in
    first-appearance order), so a million rows cost int64 arrays, not a million strings.
    """

    users: np.ndarray  # (U,) object str, first-appearance order
    offsets: np.ndarray  # (U+1,) int64; user u owns [offsets[u], offsets[u+1])
    items: np.ndarray  # (N,) int64 code into item_ids
    events: np.ndarray  # (N,) int64 code into event_names
    ts: np.ndarray  # (N,) int64 epoch ms
    values: np.ndarray  # (N,) float64, NaN where the event has no value
    item_ids: np.ndarray  # (K,) object str
    event_names: np.ndarray  # (M,) object str

    @property
    def n_users(self) -> int:
        return len(self.users)

    def user_slice(self, u: int) -> slice:
        return slice(int(self.offsets[u]), int(self.offsets[u + 1]))

    def before(self, cut_ms: int) -> EventLog:
        """Only events with ``ts`` strictly before ``cut_ms``; users left empty are dropped."""
        return self._select(self.ts < cut_ms)

    def since(self, cut_ms: int) -> EventLog:
        """Only events with ``ts`` at or after ``cut_ms``; users left empty are dropped."""
        return self._select(self.ts >= cut_ms)

    def _select(self, keep: np.ndarray) -> EventLog:
        user_of = np.repeat(np.arange(self.n_users), np.diff(self.offsets))[keep]
        counts = np.bincount(user_of, minlength=self.n_users)
        alive = counts > 0
        return EventLog(users=self.users[alive], offsets=np.concatenate([[0], np.cumsum(counts[alive])]).astype(np.int64),
                        items=self.items[keep], events=self.events[keep], ts=self.ts[keep], values=self.values[keep],
                        item_ids=self.item_ids, event_names=self.event_names)


@dataclass(frozen=True)
class Catalog:
    """Optional item metadata ``{item_id, title?, text?, categories?}``; items absent from it are fine."""

    titles: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventData:
    """What the trainer and the evaluation read: the log, the catalog, and how they were read.

    ``log`` is what training sees (before the cut, if any); ``after_cut`` holds the events at or
    after it, which only the time-split test reads.
    """

    log: EventLog
    catalog: Catalog | None
    description: dict
    after_cut: EventLog | None = None


@dataclass
class _Rows:
    """Columns of accepted rows in input order, and the rejected ones per reason."""

    skip_invalid: bool
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    # user -> (ts, input position) of their latest forget record: earlier events are not trained on.
    forgets: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, where: str, parse: Any) -> None:
        """Validate one row with ``parse()`` (a parser call); ``where`` names it for the error."""
        try:
            ev = parse()
        except InvalidRecord as exc:
            if not self.skip_invalid:
                raise DataError(f"{where}: {exc} (pass --skip-invalid to skip such rows, counted)") from None
            self.skipped[exc.reason] += 1
            if sum(self.skipped.values()) <= SHOWN_BAD_ROWS:
                log.warning("skipped %s: %s", where, exc)
            return
        if ev.event == FORGET_EVENT:  # the user asked to be forgotten: as the job clears their state
            self.forgets[ev.user_id] = max(self.forgets.get(ev.user_id, (0, 0)), (ev.ts, len(self.users)))
            return
        self.users.append(ev.user_id)
        self.items.append(ev.item_id)
        self.events.append(ev.event)
        self.ts.append(ev.ts)
        self.values.append(np.nan if ev.value is None else ev.value)


def expand_paths(specs: Sequence[str | Path], suffixes: tuple[str, ...] = EVENT_SUFFIXES) -> list[Path]:
    """Files named by ``specs`` (files, directories searched recursively, globs), sorted, no repeats."""
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            matches = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes))
        elif p.is_file():
            matches = [p]
        else:
            matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=True) if Path(m).is_file())
        if not matches:
            raise DataError(f"{spec}: no input files (expected a file, a directory or a glob of {', '.join(suffixes)})")
        found.extend(matches)
    return list(dict.fromkeys(found))


def _parquet_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based row, dict) of a Parquet file; timestamp columns are turned into epoch ms."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in required if c not in pf.schema_arrow.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns are {pf.schema_arrow.names}")
    row = 0
    for batch in pf.iter_batches(batch_size=65536):
        cols = {}
        for name in batch.schema.names:
            col = batch.column(name)
            if pa.types.is_timestamp(col.type):  # a real timestamp column: the contract's epoch ms
                col = col.cast(pa.timestamp("ms")).cast(pa.int64())
            cols[name] = col.to_pylist()
        names = list(cols)
        for values in zip(*cols.values()):
            row += 1
            yield row, dict(zip(names, values))


def _read_event_file(path: Path, rows: _Rows, max_id_bytes: int) -> None:
    if path.name.lower().endswith(".parquet"):
        for n, obj in _parquet_rows(path, ("user_id", "item_id", "event", "ts")):
            rows.add(f"{path} row {n}", lambda: event_from_object(obj, max_id_bytes=max_id_bytes, event_types=None))
        return
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.rstrip(b"\r\n")
            rows.add(f"{path}:{n}", lambda: parse_event(line, max_id_bytes=max_id_bytes, event_types=None))


def read_kafka(bootstrap_servers: str, topic: str, from_ms: int | None, to_ms: int | None, rows: _Rows,
               max_id_bytes: int = DEFAULT_MAX_ID_BYTES, idle_s: float = 3.0, timeout_s: float = 600.0) -> int:
    """Read ``topic`` (every partition) for record timestamps in [from_ms, to_ms) into ``rows``.

    Starts each partition at ``offsets_for_times(from_ms)``; stops it at the first record at or after
    ``to_ms``, or when it has delivered nothing for ``idle_s`` after reaching the end offset the broker
    reported (a reported end is not trusted alone: some brokers report it short). Records are
    validated as the job validates them (value and key). Returns the number of records read.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    got: list[tuple[int, int, int, bytes | None, bytes | None]] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise DataError(f"kafka {bootstrap_servers}: topic {topic!r} not found")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = consumer.offsets_for_times({tp: from_ms for tp in tps}) if from_ms is not None else {}
        ends = consumer.end_offsets(tps)
        active = set()
        for tp in tps:
            start = starts.get(tp)
            if from_ms is not None and start is None:
                continue  # nothing at or after from_ms in this partition
            if start is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start.offset)
            active.add(tp)
        consumer.assign(sorted(active, key=lambda t: t.partition))
        deadline = time.monotonic() + timeout_s
        while active and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=int(idle_s * 1000))
            if not batch:
                # Idle for idle_s: partitions at (or past) their reported end are done.
                done = {tp for tp in active if consumer.position(tp) >= ends.get(tp, 0)}
                if not done:
                    continue
                active -= done
                consumer.pause(*done)
                continue
            for tp, records in batch.items():
                for r in records:
                    if tp not in active:
                        break
                    if to_ms is not None and r.timestamp >= to_ms:
                        active.discard(tp)
                        consumer.pause(tp)
                        break
                    if from_ms is None or r.timestamp >= from_ms:
                        got.append((r.timestamp, r.partition, r.offset, r.key, r.value))
        if active:
            raise DataError(f"kafka {topic}: still reading partitions {sorted(t.partition for t in active)} "
                            f"after {timeout_s:.0f} s")
    finally:
        consumer.close(autocommit=False)
    got.sort(key=lambda g: (g[0], g[1], g[2]))  # record time, then partition and offset: deterministic

    def parse_record(key: bytes | None, value: bytes | None) -> Any:
        ev = parse_event(value, max_id_bytes=max_id_bytes, event_types=None)
        check_key(key, ev)
        return ev

    for ts, part, off, key, value in got:
        rows.add(f"kafka {topic}/{part}@{off}", lambda: parse_record(key, value))
    log.info("kafka %s: %d records in [%s, %s)", topic, len(got), from_ms, to_ms)
    return len(got)


def apply_forgets(rows: _Rows) -> int:
    """Drop every event that precedes a forget record of its user in (ts, input position) order.

    Returns how many were dropped. The job clears a user's state on a forget record; a model
    trained on the same log must not learn from what was forgotten either.
    """
    if not rows.forgets:
        return 0
    keep = [not (u in rows.forgets and (t, i) < rows.forgets[u]) for i, (u, t) in enumerate(zip(rows.users, rows.ts))]
    dropped = len(keep) - sum(keep)
    for name in ("users", "items", "events", "ts", "values"):
        setattr(rows, name, [v for v, k in zip(getattr(rows, name), keep) if k])
    log.info("forget records of %d users: %d earlier events not trained on", len(rows.forgets), dropped)
    return dropped


def assemble(rows: _Rows) -> EventLog:
    """Group accepted rows per user (first appearance) and order each user's by (ts, input position)."""
    if not rows.users:
        raise DataError("no valid events in the input")
    user_codes, users = pd.factorize(pd.Series(rows.users, dtype=object), sort=False)
    item_codes, item_ids = pd.factorize(pd.Series(rows.items, dtype=object), sort=False)
    event_codes, event_names = pd.factorize(pd.Series(rows.events, dtype=object), sort=False)
    ts = np.asarray(rows.ts, dtype=np.int64)
    order = np.lexsort((np.arange(len(ts)), ts, user_codes))
    counts = np.bincount(user_codes, minlength=len(users))
    return EventLog(users=np.asarray(users, dtype=object), offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                    items=item_codes.astype(np.int64)[order], events=event_codes.astype(np.int64)[order], ts=ts[order],
                    values=np.asarray(rows.values, dtype=np.float64)[order],
                    item_ids=np.asarray(item_ids, dtype=object), event_names=np.asarray(event_names, dtype=object))


def _catalog_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        for n, obj in _parquet_rows(path, ("item_id",)):
            yield f"{path} row {n}", obj
    elif name.endswith(".csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if "item_id" not in (reader.fieldnames or []):
                raise DataError(f"{path}: no 'item_id' column in the CSV header {reader.fieldnames}")
            for n, obj in enumerate(reader, start=2):
                yield f"{path}:{n}", {k: (v if v != "" else None) for k, v in obj.items()}
    else:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
                yield f"{path}:{n}", obj


def read_catalog(specs: Sequence[str | Path], max_id_bytes: int = DEFAULT_MAX_ID_BYTES) -> Catalog:
    """Item catalog rows ``{item_id, title?, text?, categories?}`` (JSON Lines, Parquet or CSV).

    ``categories`` is a list of strings, or one string split on ``|`` (CSV). An item listed twice is
    an error: the two rows may disagree.
    """
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    cats: dict[str, list[str]] = {}
    ids: dict[str, None] = {}
    for path in expand_paths(specs, CATALOG_SUFFIXES):
        for where, obj in _catalog_rows(path):
            item = obj.get("item_id")
            if not isinstance(item, str):
                raise DataError(f"{where}: field 'item_id' must be a string, got {item!r:.80}")
            try:
                check_id(item, "field 'item_id'", "read catalog", max_id_bytes)
            except InvalidRecord as exc:
                raise DataError(f"{where}: {exc}") from None
            if item in ids:
                raise DataError(f"{where}: item_id {item!r} listed twice")
            ids[item] = None
            for key, out in (("title", titles), ("text", texts)):
                value = obj.get(key)
                if value is not None:
                    if not isinstance(value, str):
                        raise DataError(f"{where}: field {key!r} must be a string, got {value!r:.80}")
                    out[item] = value
            value = obj.get("categories")
            if isinstance(value, str):
                value = [c.strip() for c in value.split("|") if c.strip()]
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                    raise DataError(f"{where}: field 'categories' must be a list of strings, got {value!r:.80}")
                cats[item] = value
    log.info("catalog: %d items (%d with a title)", len(ids), len(titles))
    return Catalog(titles=titles, texts=texts, categories=cats, item_ids=tuple(ids))


def parse_time_ms(text: str | int | None) -> int | None:
    """Epoch milliseconds from an integer or an ISO-8601 date/time (UTC unless it says otherwise)."""
    if text is None or isinstance(text, int):
        return text
    s = str(text).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise DataError(f"{text!r}: expected epoch milliseconds or an ISO-8601 date such as 2001-01-01") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def load_event_data(events: Sequence[str | Path] = (), catalog: Sequence[str | Path] = (), *,
                    bootstrap_servers: str | None = None, topic: str = "user-events", from_ms: int | None = None,
                    to_ms: int | None = None, skip_invalid: bool = False, train_until_ms: int | None = None,
                    dataset: str | None = None, max_id_bytes: int = DEFAULT_MAX_ID_BYTES) -> EventData:
    """Read events from files and/or the topic, optionally a catalog, and cut at ``train_until_ms``.

    ``dataset`` names the data in artifacts and metrics (default: the first input's directory or
    file stem, or the topic).
    """
    if not events and bootstrap_servers is None:
        raise DataError("no input: give event files (--events) or a broker (--bootstrap-servers)")
    if (from_ms is not None or to_ms is not None) and bootstrap_servers is None:
        raise DataError("--from-ts/--to-ts select records of the topic (--bootstrap-servers); "
                        "to cut files in time use --train-until")
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise DataError(f"--to-ts {to_ms} must be after --from-ts {from_ms}")
    rows = _Rows(skip_invalid=skip_invalid)
    paths = expand_paths(events) if events else []
    for path in paths:
        _read_event_file(path, rows, max_id_bytes)
    sources: list[str] = [str(p) for p in paths]
    if bootstrap_servers is not None:
        read_kafka(bootstrap_servers, topic, from_ms, to_ms, rows, max_id_bytes)
        sources.append(f"kafka://{bootstrap_servers}/{topic}?from_ms={from_ms}&to_ms={to_ms}")
    if rows.skipped:
        log.warning("skipped %d invalid rows: %s", sum(rows.skipped.values()), dict(rows.skipped))
    forgotten = apply_forgets(rows)
    log_ = assemble(rows)
    cat = read_catalog(catalog, max_id_bytes) if catalog else None
    if dataset is None:
        first = Path(events[0]) if events else None
        dataset = topic if first is None else (first.name if first.is_dir() else first.stem.split("*")[0] or "events")
    desc: dict[str, Any] = {
        "dataset": dataset, "sources": sources, "catalog": [str(c) for c in catalog] or None,
        "interactions": int(len(log_.items)), "users": log_.n_users, "items": int(len(log_.item_ids)),
        "event_types": {str(n): int(c) for n, c in zip(log_.event_names, np.bincount(log_.events, minlength=len(log_.event_names)))},
        "skipped_rows": dict(rows.skipped), "forgotten": {"users": len(rows.forgets), "events": forgotten},
        "train_until_ms": train_until_ms,
        "split": "leave-one-out per user (last = test, second-to-last = validation)",
        "order": "ts, then input position (files in sorted path order, rows in file order)",
    }
    after_cut = None
    if train_until_ms is not None:
        log_, after_cut = log_.before(int(train_until_ms)), log_.since(int(train_until_ms))
        desc.update(interactions_before_cut=int(len(log_.items)), users_before_cut=log_.n_users)
        if not log_.n_users:
            raise DataError(f"no events before --train-until {train_until_ms}")
    log.info("%s: %d interactions, %d users, %d items, events %s", dataset, len(log_.items), log_.n_users,
             len(np.unique(log_.items)), desc["event_types"])
    return EventData(log=log_, catalog=cat, description=desc, after_cut=after_cut)


def add_data_args(p: argparse.ArgumentParser, train_until: bool = True) -> None:
    """The input flags shared by ``models.train`` and ``models.evaluate``."""
    g = p.add_argument_group("input (the user-events contract; see README 'Train on your event log')")
    g.add_argument("--events", nargs="+", default=[], metavar="PATH",
                   help="JSON Lines / Parquet files, directories or globs of {user_id, item_id, event, ts, value?}")
    g.add_argument("--catalog", nargs="+", default=[], metavar="PATH",
                   help="optional item catalog {item_id, title?, text?, categories?}: JSON Lines, Parquet or CSV")
    g.add_argument("--bootstrap-servers", default=None, help="read the events topic back from this Kafka instead")
    g.add_argument("--topic", default="user-events", help="events topic for --bootstrap-servers")
    g.add_argument("--from-ts", default=None, help="Kafka read: first record timestamp (epoch ms or ISO date)")
    g.add_argument("--to-ts", default=None, help="Kafka read: end record timestamp, exclusive (epoch ms or ISO date)")
    g.add_argument("--skip-invalid", action="store_true", help="skip invalid rows (counted, logged) instead of failing")
    g.add_argument("--dataset-name", default=None, help="name in metrics.json (default: from the first input)")
    if train_until:
        g.add_argument("--train-until", default=None,
                       help="only events with ts strictly before this (epoch ms or ISO date, UTC)")


def data_from_args(args: argparse.Namespace, train_until_ms: int | None = None) -> EventData:
    """``load_event_data`` from the flags of ``add_data_args``."""
    if train_until_ms is None:
        train_until_ms = parse_time_ms(getattr(args, "train_until", None))
    return load_event_data(args.events, args.catalog, bootstrap_servers=args.bootstrap_servers, topic=args.topic,
                           from_ms=parse_time_ms(args.from_ts), to_ms=parse_time_ms(args.to_ts),
                           skip_invalid=args.skip_invalid, train_until_ms=train_until_ms, dataset=args.dataset_name)


def iter_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """JSON Lines of ``rows`` (compact, UTF-8 kept): what the adapters and tests write."""
    for r in rows:
        yield json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
