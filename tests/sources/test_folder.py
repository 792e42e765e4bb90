from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pref_assets.core.prompts import PromptSourceError
from pref_assets.core.watch import FolderCursor
from pref_assets.settings import SourceSettings
from pref_assets.sources import read_batch
from pref_assets.sources.folder import FolderScan, read_folder_file, scan_folder

NOW = time.time()


def _drop(folder: Path, name: str, text: str, age_s: float = 60.0) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def _jsonl(n: int, start: int = 0) -> str:
    return "".join(json.dumps({"instruction": f"question {i}"}) + "\n" for i in range(start, start + n))


def _scan(folder: Path, cursor: FolderCursor | None = None, now: float = NOW) -> FolderScan:
    return scan_folder(folder, {}, 10, cursor=cursor or FolderCursor(), min_file_age_s=2.0, now=now)


def test_only_complete_supported_files_are_read(tmp_path: Path) -> None:
    _drop(tmp_path, "ready.jsonl", _jsonl(3))
    _drop(tmp_path, "young.jsonl", _jsonl(3), age_s=0.5)
    _drop(tmp_path, ".hidden.jsonl", _jsonl(3))
    _drop(tmp_path, "upload.jsonl.part", _jsonl(3))
    _drop(tmp_path, "upload.tmp", _jsonl(3))
    _drop(tmp_path, "notes.txt", "hello")
    (tmp_path / "sub.jsonl").mkdir()
    scan = _scan(tmp_path)
    assert [c.file_name for c in scan.changes] == ["ready.jsonl"]
    assert scan.problems == ()
    assert [c.file_name for c in _scan(tmp_path, scan.cursor, now=NOW + 10).changes] == ["young.jsonl"]


def test_an_unreadable_file_is_reported_once_and_read_again_when_it_changes(tmp_path: Path) -> None:
    bad = _drop(tmp_path, "bad.jsonl", '{"instruction": "fine"}\n{"instruction": \n')
    _drop(tmp_path, "good.jsonl", _jsonl(3))
    first = _scan(tmp_path)
    assert [c.file_name for c in first.changes] == ["good.jsonl"]
    assert len(first.problems) == 1
    assert f"{bad}:2: malformed JSON" in first.problems[0]
    assert "bad.jsonl" not in first.cursor.files
    assert _scan(tmp_path, first.cursor) == FolderScan(first.cursor, (), ())
    _drop(tmp_path, "bad.jsonl", _jsonl(2), age_s=30)
    fixed = _scan(tmp_path, first.cursor)
    assert [c.file_name for c in fixed.changes] == ["bad.jsonl"]
    assert fixed.cursor.failed == {}


def test_a_missing_column_and_a_bad_name_are_problems(tmp_path: Path) -> None:
    _drop(tmp_path, "wrong.csv", "question\nWhy?\n")
    _drop(tmp_path, "my prompts.jsonl", _jsonl(1))
    problems = _scan(tmp_path).problems
    assert any("my prompts.jsonl" in p and "cannot name a partition" in p for p in problems)
    assert any("wrong.csv: no column 'instruction'" in p for p in problems)


def test_a_removed_file_leaves_the_cursor(tmp_path: Path) -> None:
    path = _drop(tmp_path, "a.jsonl", _jsonl(3))
    cursor = _scan(tmp_path).cursor
    path.unlink()
    assert _scan(tmp_path, cursor).cursor == FolderCursor()


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PromptSourceError, match="no such folder"):
        _scan(tmp_path / "absent")


def test_read_batch_reads_the_keys_file_and_range(tmp_path: Path) -> None:
    _drop(tmp_path, "a.jsonl", _jsonl(25))
    _drop(tmp_path, "b.jsonl", _jsonl(25, start=100))
    rows, (start, stop) = read_batch(SourceSettings(kind="folder", folder=str(tmp_path)), "b.jsonl/batch-00001", 10)
    assert (start, stop) == (10, 20)
    assert [r.values["instruction"] for r in rows[start:stop]] == [f"question {i}" for i in range(110, 120)]


def test_read_folder_file_refuses_names_outside_the_folder(tmp_path: Path) -> None:
    with pytest.raises(PromptSourceError, match="cannot name a partition"):
        read_folder_file(tmp_path, "../secret.jsonl", {})


def test_folder_source_needs_a_folder() -> None:
    with pytest.raises(ValueError, match=r"source\.folder is not set"):
        SourceSettings(kind="folder")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("deep.jsonl", '{"instruction": "fine"}\n' + "[" * 5_000 + "]" * 5_000 + "\n", "deep.jsonl:2"),
        ("deep.json", '[{"instruction": "x", "n": ' + "{" * 5_000 + "}" * 5_000 + "}]", "deep.json:1"),
    ],
)
def test_deeply_nested_json_skips_only_its_file(tmp_path: Path, name: str, text: str, where: str) -> None:
    _drop(tmp_path, name, text)
    _drop(tmp_path, "good.jsonl", _jsonl(3))
    scan = _scan(tmp_path)
    assert [c.file_name for c in scan.changes] == ["good.jsonl"]
    assert scan.problems == (f"{tmp_path / where}: JSON nested deeper than 32 levels; skipped until the file changes",)
    assert scan.cursor.failed.keys() == {name}
