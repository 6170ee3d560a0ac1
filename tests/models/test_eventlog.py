"""Reading the `user-events` contract for training: files, catalog, bad rows, vocabulary, split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.artifact import EVENT_TYPES, FIRST_ITEM_INDEX, OOV_INDEX
from models.errors import DataError
from models.eventlog import expand_paths, load_event_data, parse_time_ms, read_catalog
from models.split import build_vocab, item_order_key, leave_one_out
from tests.models.conftest import synthetic_events, write_events

ROWS = [
    {"user_id": "alice", "item_id": "sku-2", "event": "view", "ts": 2000},
    {"user_id": "bob", "item_id": "10", "event": "purchase", "ts": 1500, "value": 19.9},
    {"user_id": "alice", "item_id": "sku-1", "event": "click", "ts": 1000},
    {"user_id": "alice", "item_id": "2", "event": "cart", "ts": 2000},  # same ts as row 1: input order decides
    {"user_id": "bob", "item_id": "sku-1", "event": "view", "ts": 1200, "extra": {"ignored": True}},
]


def _sequences(data) -> dict[str, list[tuple[str, str, int]]]:
    log = data.log
    out = {}
    for u in range(log.n_users):
        s = log.user_slice(u)
        out[str(log.users[u])] = [(str(log.item_ids[i]), str(log.event_names[e]), int(t))
                                  for i, e, t in zip(log.items[s], log.events[s], log.ts[s])]
    return out


EXPECTED = {
    "alice": [("sku-1", "click", 1000), ("sku-2", "view", 2000), ("2", "cart", 2000)],
    "bob": [("sku-1", "view", 1200), ("10", "purchase", 1500)],
}


def test_jsonl_order_users_and_values(tmp_path: Path) -> None:
    data = load_event_data([write_events(tmp_path / "e.jsonl", ROWS)])
    assert list(data.log.users) == ["alice", "bob"]  # first appearance
    assert _sequences(data) == EXPECTED
    bob = data.log.user_slice(1)
    assert np.isnan(data.log.values[bob][0]) and data.log.values[bob][1] == pytest.approx(19.9)
    assert data.description["interactions"] == 5 and data.description["dataset"] == "e"
    assert data.description["event_types"] == {"view": 2, "purchase": 1, "click": 1, "cart": 1}


def test_parquet_glob_and_directory_inputs_agree(tmp_path: Path) -> None:
    write_events(tmp_path / "jsonl" / "a.jsonl", ROWS[:2])
    write_events(tmp_path / "jsonl" / "b.jsonl", ROWS[2:])
    (tmp_path / "mixed").mkdir()
    columns = ("user_id", "item_id", "event", "ts", "value")
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in ROWS[:2]]),
                   tmp_path / "mixed" / "a.parquet")
    write_events(tmp_path / "mixed" / "b.jsonl", ROWS[2:])
    by_dir = load_event_data([tmp_path / "jsonl"])
    by_glob = load_event_data([str(tmp_path / "jsonl" / "*.jsonl")])
    mixed = load_event_data([tmp_path / "mixed"])
    for data in (by_dir, by_glob, mixed):
        assert _sequences(data) == EXPECTED
    assert [Path(s).name for s in mixed.description["sources"]] == ["a.parquet", "b.jsonl"]
    with pytest.raises(DataError, match="no input files"):
        expand_paths([str(tmp_path / "nothing-*.jsonl")])


def test_parquet_timestamp_column_is_epoch_ms(tmp_path: Path) -> None:
    table = pa.table({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "event": ["view"] * 3,
                      "ts": pa.array([3000, 1000, 2000], pa.int64()).cast(pa.timestamp("ms"))})
    pq.write_table(table, tmp_path / "t.parquet")
    data = load_event_data([tmp_path / "t.parquet"])
    assert data.log.ts.tolist() == [1000, 2000, 3000]
    assert [data.log.item_ids[i] for i in data.log.items] == ["b", "c", "a"]


@pytest.mark.parametrize("line, field, reason", [
    ('{"user_id": "u", "item_id": "a", "event": "view", "ts": "now"}', "'ts'", "wrong_type"),
    ('{"user_id": "u", "item_id": "a", "event": "view"}', "'ts'", "missing_field"),
    ('{"user_id": " ", "item_id": "a", "event": "view", "ts": 5}', "'user_id'", "empty_id"),
    ('{"user_id": "u", "item_id": "a", "event": "view", "ts": 1700000000000000}', "'ts'", "ts_out_of_range"),
    ('{"user_id": "u", "item_id": "a", "event": "", "ts": 5}', "'event'", "empty_id"),
    ('{"user_id": "u", "item_id": "a", "event": "view", "ts": 5, "value": NaN}', "'value'", "non_finite"),
    ('not json', "JSON", "bad_json"),
    ('', "JSON", "bad_json"),
])
def test_bad_row_names_file_line_and_field(tmp_path: Path, line: str, field: str, reason: str) -> None:
    good = json.dumps(ROWS[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_event_data([path])
    msg = str(err.value)
    assert f"{path}:2:" in msg and field in msg and f"[{reason}]" in msg and "--skip-invalid" in msg
    data = load_event_data([path], skip_invalid=True)  # the explicit flag: skipped, counted
    assert data.description["skipped_rows"] == {reason: 1}
    assert data.description["interactions"] == 2


def test_bad_parquet_rows(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["a", "b"], "event": ["view", "view"],
                             "ts": [5, 6], "value": [1.0, float("inf")]}), tmp_path / "v.parquet")
    with pytest.raises(DataError, match=r"v.parquet row 2: .*'value'.*non_finite"):
        load_event_data([tmp_path / "v.parquet"])
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["a"], "ts": [5]}), tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) \['event'\]"):
        load_event_data([tmp_path / "c.parquet"])
    with pytest.raises(DataError, match="no valid events"):
        (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
        load_event_data([tmp_path / "empty.jsonl"])


def test_catalog_formats(tmp_path: Path) -> None:
    rows = [{"item_id": "a", "title": "Alpha", "categories": ["x", "y"]}, {"item_id": "b", "text": "about b"}]
    write_events(tmp_path / "c.jsonl", rows)
    pq.write_table(pa.table({"item_id": ["a", "b"], "title": ["Alpha", None], "text": [None, "about b"],
                             "categories": [["x", "y"], None]}), tmp_path / "c.parquet")
    (tmp_path / "c.csv").write_text("item_id,title,text,categories\na,Alpha,,x|y\nb,,about b,\n", encoding="utf-8")
    for name in ("c.jsonl", "c.parquet", "c.csv"):
        cat = read_catalog([tmp_path / name])
        assert cat.item_ids == ("a", "b") and cat.titles == {"a": "Alpha"} and cat.texts == {"b": "about b"}
        assert cat.categories == {"a": ["x", "y"]}
    (tmp_path / "dup.csv").write_text("item_id,title\na,A\na,B\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dup.csv:3: item_id 'a' listed twice"):
        read_catalog([tmp_path / "dup.csv"])
    (tmp_path / "noid.jsonl").write_text('{"title": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"noid.jsonl:1: field 'item_id' must be a string"):
        read_catalog([tmp_path / "noid.jsonl"])


def test_vocab_is_deterministic_and_documented(tmp_path: Path) -> None:
    rows = synthetic_events(n_users=20, n_items=40, events=("view", "like", "add_to_wishlist"))
    rows += [{"user_id": "x", "item_id": i, "event": "view", "ts": 7} for i in ("10", "9", "010", "b", "A")]
    a = load_event_data([write_events(tmp_path / "a.jsonl", rows)])
    b = load_event_data([write_events(tmp_path / "b.jsonl", rows[::-1])])
    va, vb = build_vocab(a.log), build_vocab(b.log)
    assert va == vb  # input order does not matter
    items = list(va["items"])
    assert items[:2] == ["9", "10"] and items.index("010") > items.index("10")  # integers by value first
    assert items == sorted(items, key=item_order_key)
    assert list(va["items"].values()) == list(range(FIRST_ITEM_INDEX, FIRST_ITEM_INDEX + len(items)))
    # contract names at fixed indices, the data's other names after them in code-point order
    assert va["events"] == {**EVENT_TYPES, "add_to_wishlist": 6, "like": 7}


def test_leave_one_out_and_time_cut(synthetic_dataset, synthetic_log) -> None:
    log = synthetic_dataset.log
    vocab = build_vocab(log, synthetic_dataset.catalog)
    assert vocab["titles"]["sku-3"] == "Item 3"
    split = leave_one_out(log, vocab["items"], vocab["events"])
    assert split.n_items == len(vocab["items"]) + FIRST_ITEM_INDEX
    for u in split.eval_users:
        assert np.array_equal(split.train[u], split.seqs[u][:-2])
    assert all(OOV_INDEX not in s for s in split.seqs)
    cut = int(np.median(log.ts))
    cut_data = load_event_data([synthetic_log[0]], train_until_ms=cut)
    assert (cut_data.log.ts < cut).all() and len(cut_data.log.ts) == int((log.ts < cut).sum())
    assert cut_data.description["interactions_before_cut"] == len(cut_data.log.ts)
    assert np.diff(cut_data.log.offsets).min() >= 1  # users left empty are dropped


def test_parse_time() -> None:
    assert parse_time_ms("2001-01-01") == 978_307_200_000
    assert parse_time_ms("978307200000") == 978_307_200_000
    assert parse_time_ms("2001-01-01T01:00:00+01:00") == 978_307_200_000
    with pytest.raises(DataError, match="ISO-8601"):
        parse_time_ms("yesterday")


def test_input_flag_errors(tmp_path: Path) -> None:
    path = write_events(tmp_path / "e.jsonl", ROWS)
    with pytest.raises(DataError, match="no input"):
        load_event_data([])
    with pytest.raises(DataError, match="--train-until"):
        load_event_data([path], from_ms=1)
    with pytest.raises(DataError, match="must be after"):
        load_event_data(bootstrap_servers="127.0.0.1:1", from_ms=10, to_ms=5)


def test_time_cut_task(tmp_path: Path) -> None:
    from models.protocols import time_cut_task

    rows = [
        {"user_id": "a", "item_id": "1", "event": "view", "ts": 10},
        {"user_id": "a", "item_id": "2", "event": "view", "ts": 20},
        {"user_id": "b", "item_id": "3", "event": "view", "ts": 15},
        {"user_id": "a", "item_id": "3", "event": "click", "ts": 40},  # a's first after the cut
        {"user_id": "a", "item_id": "1", "event": "view", "ts": 30},
        {"user_id": "b", "item_id": "new", "event": "view", "ts": 50},  # unknown to the model: left out
        {"user_id": "c", "item_id": "1", "event": "view", "ts": 60},  # no history before the cut
    ]
    data = load_event_data([write_events(tmp_path / "e.jsonl", rows)], train_until_ms=25)
    assert data.after_cut is not None and data.after_cut.n_users == 3
    vocab = build_vocab(data.log)
    split = leave_one_out(data.log, vocab["items"], vocab["events"])
    task, unknown = time_cut_task(split, data.log, data.after_cut, vocab["items"], vocab["events"])
    idx = vocab["items"]
    assert unknown == 1 and task.targets.tolist() == [idx["1"]]  # user a, ts 30 comes before ts 40
    assert task.histories[0].tolist() == [idx["1"], idx["2"]]
    assert task.interacted[0].tolist() == [idx["1"], idx["2"], idx["1"]]


def test_forget_records_remove_earlier_events(tmp_path: Path) -> None:
    rows = [
        {"user_id": "a", "item_id": "1", "event": "view", "ts": 10},
        {"user_id": "b", "item_id": "1", "event": "view", "ts": 11},
        {"user_id": "a", "item_id": "2", "event": "view", "ts": 20},
        {"user_id": "a", "event": "forget", "ts": 20},  # same ms as the event before it: that one goes too
        {"user_id": "a", "item_id": "3", "event": "view", "ts": 30},
        {"user_id": "c", "event": "forget", "ts": 5},  # forget of a user with no events: nothing to drop
    ]
    data = load_event_data([write_events(tmp_path / "f.jsonl", rows)])
    assert _sequences(data) == {"b": [("1", "view", 11)], "a": [("3", "view", 30)]}
    assert data.description["forgotten"] == {"users": 2, "events": 2}
    assert "forget" not in set(data.log.event_names)
