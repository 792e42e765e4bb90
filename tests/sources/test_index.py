from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from pref_assets.core.prompts import duplicate_key, normalize_rows
from pref_assets.settings import SourceSettings
from pref_assets.sources.batches import count_rows, read_source_batch
from pref_assets.sources.dupkeys import duplicate_keys
from pref_assets.sources.files import read_files
from pref_assets.sources.indexed import file_index


def _batches(path: Path, store: Path, size: int, n_rows: int, **extra: object) -> list:
    source = SourceSettings(kind="files", paths=[str(path)], **extra)
    return [read_source_batch(source, f"batch-{i:05d}", size, store) for i in range(-(-n_rows // size))]


def _prompts(source: SourceSettings, store: Path, size: int, n_batches: int) -> list:
    out = []
    for i in range(n_batches):
        read = read_source_batch(source, f"batch-{i:05d}", size, store)
        out += normalize_rows(read.rows, {}, max_chars=source.max_prompt_chars, originals=read.originals,
                              row_key=lambda j, r=read, i=i: f"batch-{i:05d}#{j}")  # fmt: skip
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_jsonl_batches_with_line_separators_crlf_and_bom_read_the_same_rows(tmp_path: Path, size: int) -> None:
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "plain", "ünï"]
    lines = [json.dumps({"instruction": t}, ensure_ascii=False) for t in texts]
    path = tmp_path / "p.jsonl"
    path.write_bytes(("\ufeff" + "\r\n".join(lines[:3]) + "\r\n\r\n" + "\n".join(lines[3:])).encode())
    whole = read_files([str(path)], {})
    got = [row for batch in _batches(path, tmp_path / "store", size, 5) for row in batch.rows]
    assert [(r.source_ref, r.values) for r in got] == [(r.source_ref, r.values) for r in whole]
    assert [r.source_ref.rsplit(":", 1)[1] for r in got] == ["1", "2", "3", "5", "6"]


@pytest.mark.parametrize("size", [1, 2, 4])
def test_csv_batches_with_quoted_newlines_read_byte_ranges(tmp_path: Path, size: int) -> None:
    path = tmp_path / "p.csv"
    path.write_text('instruction,topic\n"line one\nline two",x\nsecond,y\n\nthird,z\n"a\r\nb",w\n', encoding="utf-8")
    index = file_index(path, {}, 20_000, tmp_path / "store")
    assert index.meta["ranges"] == "1"
    whole = read_files([str(path)], {})
    got = [row for batch in _batches(path, tmp_path / "store", size, len(whole)) for row in batch.rows]
    assert [(r.source_ref, r.values) for r in got] == [(r.source_ref, r.values) for r in whole]
    data = path.read_bytes()
    offsets = index.slice(0, index.rows)["offset"]
    assert data[offsets[0] :].startswith(b'"line one') and data[offsets[1] :].startswith(b"second")


def test_parquet_batches_are_slices(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame({"instruction": [f"q{i}" for i in range(100)]}).write_parquet(path, row_group_size=7)
    batch = _batches(path, tmp_path / "store", 10, 100)[4]
    assert [r.values["instruction"] for r in batch.rows] == [f"q{i}" for i in range(40, 50)]
    assert batch.rows[0].source_ref == f"{path}:row 41" and batch.total == 100


def test_the_index_is_stored_once_and_replaced_when_the_file_changes(tmp_path: Path) -> None:
    path, store = tmp_path / "p.jsonl", tmp_path / "store"
    path.write_text("".join(json.dumps({"instruction": f"q{i}"}) + "\n" for i in range(10)))
    source = SourceSettings(kind="files", paths=[str(path)])
    assert count_rows(source, store) == 10
    [stored] = (store / "index").iterdir()
    assert count_rows(source, store) == 10 and list((store / "index").iterdir()) == [stored]
    with path.open("a") as handle:
        handle.write(json.dumps({"instruction": "q10"}) + "\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert count_rows(source, store) == 11
    [replaced] = (store / "index").iterdir()
    assert replaced != stored
    assert [r.values["instruction"] for r in read_source_batch(source, "batch-00002", 5, store).rows] == ["q10"]


def test_a_repeat_far_from_its_original_is_found_through_the_index(tmp_path: Path) -> None:
    rows = [{"instruction": f"question {i}"} for i in range(1_000)]
    rows[3] = {"instruction": "  "}  # a failed row is no original
    rows[5] = {"instruction": "Name a river."}
    rows[900] = {"instruction": "NAME  a river.\u200b"}
    rows[950] = {"instruction": "  "}
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = SourceSettings(kind="files", paths=[str(path)])
    read = read_source_batch(source, "batch-00090", 10, tmp_path / "store")
    assert read.start == 900
    [prompt] = normalize_rows(read.rows[:1], {}, max_chars=99, originals=read.originals, row_key=lambda i: "x")
    assert prompt.duplicate_of == "batch-00000#5"
    assert prompt.reason == f"duplicate: same prompt as {path}:6"
    blank = normalize_rows(read_source_batch(source, "batch-00095", 10, tmp_path / "store").rows, {}, max_chars=99)
    assert blank[0].reason.startswith("empty_instruction")


def test_batches_find_the_same_duplicates_as_the_whole_source(tmp_path: Path) -> None:
    texts = ["a", "b", "A", "", "c", "b ", "Caf\u00e9", "Cafe\u0301", "x" * 200, "x" * 200, "a"]
    first, second = tmp_path / "one.jsonl", tmp_path / "two.csv"
    first.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in texts[:6]))
    second.write_text("instruction\n" + "".join(f"{t}\n" for t in texts[6:]), encoding="utf-8")
    source = SourceSettings(kind="files", paths=[str(first), str(second)], max_prompt_chars=100)
    row_key = lambda i: f"batch-{i // 2:05d}#{i % 2}"  # noqa: E731
    whole = normalize_rows(read_files(source.paths, {}), {}, max_chars=100, row_key=row_key)
    got = _prompts(source, tmp_path / "store", 2, 6)
    assert [(r.status, r.reason, r.duplicate_of) for r in got] == [(r.status, r.reason, r.duplicate_of) for r in whole]
    assert sum(r.duplicate_of is not None for r in got) == 4


@pytest.mark.parametrize(
    "text",
    ["Hello there", " Hello  there\n", "HELLO\x1cTHERE", "", " \t", "\u200b", "Stra\u00dfe", "a\x00b", "y" * 30, "\x85",
     "a\u2028b", None, "Ab\r\nC", "ok\x7f", "\uff28i"],
)  # fmt: skip
def test_column_wise_keys_equal_the_row_by_row_key(text: str | None) -> None:
    [key] = duplicate_keys({"instruction": [text]}, 1, {}, max_chars=20)
    expected = duplicate_key({"instruction": text}, {}, max_chars=20)
    assert key == (None if expected is None else bytes.fromhex(expected))
