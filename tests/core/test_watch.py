from __future__ import annotations

import pytest

from pref_assets.core.batching import FileBatch, file_name_problem, parse_file_batch_key
from pref_assets.core.watch import FileStamp, FileState, FolderCursor, batch_digests, plan_file


def test_file_batch_keys_name_the_file_and_the_batch() -> None:
    assert FileBatch("prompts-2024.jsonl", 12).key == "prompts-2024.jsonl/batch-00012"


@pytest.mark.parametrize("key", ["a.jsonl/batch-00000", "x_y-z.v2.parquet/batch-00012", "README.csv/batch-99999"])
def test_file_batch_keys_parse_back(key: str) -> None:
    assert parse_file_batch_key(key).key == key


def test_file_batch_bounds_are_rows_of_that_file() -> None:
    batch = parse_file_batch_key("a.jsonl/batch-00002")
    assert batch == FileBatch("a.jsonl", 2)
    assert batch.bounds(10) == (20, 30)


@pytest.mark.parametrize(
    "key",
    ["batch-00000", "a.jsonl/", "a.jsonl/batch-", "a.jsonl/batch-x1", "/batch-00000", "../a.jsonl/batch-00000",
     "sub/a.jsonl/batch-00000", "a b.jsonl/batch-00000"],
)  # fmt: skip
def test_parse_rejects_keys_that_are_not_a_file_batch(key: str) -> None:
    with pytest.raises(ValueError, match="not a watched-folder partition key"):
        parse_file_batch_key(key)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a.jsonl", True), ("Q3_prompts-v2.csv", True), ("a b.jsonl", False), ("a,b.jsonl", False),
     ("a...b.jsonl", False), (".hidden.jsonl", False), ("ünï.jsonl", False), ("a[1].jsonl", False), ("", False)],
)  # fmt: skip
def test_file_names_that_can_name_a_partition(name: str, ok: bool) -> None:
    assert (file_name_problem(name) is None) is ok


def test_digests_change_only_for_the_batch_that_changed() -> None:
    rows = [{"instruction": f"q{i}"} for i in range(25)]
    before = batch_digests(rows, 10)
    rows[12] = {"instruction": "edited"}
    after = batch_digests(rows, 10)
    assert len(before) == 3
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, False, True]


def test_a_new_file_adds_every_batch_and_runs_each() -> None:
    change = plan_file(FileStamp("a.jsonl", "v1"), ("d0", "d1", "d2"), None)
    keys = ["a.jsonl/batch-00000", "a.jsonl/batch-00001", "a.jsonl/batch-00002"]
    assert change.new_keys == tuple(keys)
    assert [r.partition_key for r in change.runs] == keys
    assert change.state == FileState("v1", 1, ("d0", "d1", "d2"))


def test_a_grown_file_adds_new_batches_and_reruns_changed_ones() -> None:
    before = FileState("v1", 1, ("d0", "d1"))
    change = plan_file(FileStamp("a.jsonl", "v2"), ("d0", "d1x", "d2"), before)
    assert change.new_keys == ("a.jsonl/batch-00002",)
    assert [r.partition_key for r in change.runs] == ["a.jsonl/batch-00001", "a.jsonl/batch-00002"]
    assert change.state.revision == 2


def test_a_touched_file_with_the_same_content_runs_nothing() -> None:
    before = FileState("v1", 1, ("d0", "d1"))
    change = plan_file(FileStamp("a.jsonl", "v2"), ("d0", "d1"), before)
    assert (change.new_keys, change.runs, change.state) == ((), (), FileState("v2", 1, ("d0", "d1")))


def test_content_that_returns_to_an_earlier_version_gets_a_new_run_key() -> None:
    first = plan_file(FileStamp("a.jsonl", "v1"), ("d0",), None)
    second = plan_file(FileStamp("a.jsonl", "v2"), ("other",), first.state)
    third = plan_file(FileStamp("a.jsonl", "v3"), ("d0",), second.state)
    run_keys = [c.runs[0].run_key for c in (first, second, third)]
    assert len(set(run_keys)) == 3


def test_a_removed_file_that_comes_back_with_the_same_content_gets_a_new_run_key() -> None:
    first = plan_file(FileStamp("a.jsonl", "10:1"), ("d0",), None)
    again = plan_file(FileStamp("a.jsonl", "10:2"), ("d0",), None)  # the cursor forgot it when it was removed
    assert first.runs[0].run_key != again.runs[0].run_key


def test_a_shrunk_file_reports_its_stale_batches() -> None:
    change = plan_file(FileStamp("a.jsonl", "v2"), ("d0",), FileState("v1", 1, ("d0", "d1", "d2")))
    assert change.stale_keys == ("a.jsonl/batch-00001", "a.jsonl/batch-00002")
    assert change.runs == ()


def test_cursor_round_trips() -> None:
    cursor = FolderCursor({"a.jsonl": FileState("10:5", 2, ("d0", "d1"))}, {"b.csv": "3:9"})
    assert FolderCursor.decode(cursor.encode()) == cursor
    assert FolderCursor.decode(None) == FolderCursor()


def test_cursor_knows_which_versions_it_has_seen() -> None:
    cursor = FolderCursor({"a.jsonl": FileState("v1", 1, ("d0",))}, {"b.csv": "v7"})
    assert cursor.has_seen(FileStamp("a.jsonl", "v1"))
    assert cursor.has_seen(FileStamp("b.csv", "v7"))
    assert not cursor.has_seen(FileStamp("a.jsonl", "v2"))
    assert not cursor.has_seen(FileStamp("b.csv", "v8"))
    assert not cursor.has_seen(FileStamp("c.json", "v1"))
