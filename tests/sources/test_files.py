from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pref_assets.core.prompts import PromptSourceError, normalize_rows
from pref_assets.settings import SourceSettings
from pref_assets.sources import read_source
from pref_assets.sources.embedded import read_embedded
from pref_assets.sources.files import read_files


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_embedded_set_has_enough_prompts_and_topics() -> None:
    rows = normalize_rows(read_embedded(), {}, max_chars=20_000)
    assert len(rows) >= 120
    assert all(r.status == "ok" for r in rows)
    assert len({r.topic for r in rows}) >= 8
    assert len({r.prompt_id for r in rows}) == len(rows)


def test_every_format_reads_the_same_rows(tmp_path: Path) -> None:
    records = [{"q": "First?", "t": "a"}, {"q": "Second, with ünïcode?", "t": "b"}]
    paths = [
        _write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in records)),
        _write(tmp_path / "p.json", json.dumps(records)),
        _write(tmp_path / "p.csv", 'q,t\nFirst?,a\n"Second, with ünïcode?",b\n'),
    ]
    pl.DataFrame(records).write_parquet(tmp_path / "p.parquet")
    paths.append(tmp_path / "p.parquet")
    for path in paths:
        rows = normalize_rows(
            read_files([str(path)], {"instruction": "q", "topic": "t"}),
            {"instruction": "q", "topic": "t"},
            max_chars=99,
        )
        assert [(r.instruction, r.topic) for r in rows] == [
            ("First?", "a"),
            ("Second, with ünïcode?", "b"),
        ], path


def test_source_refs_name_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", '{"instruction": "a"}\n\n{"instruction": "b"}\n')
    assert [r.source_ref for r in read_files([str(path)], {})] == [f"{path}:1", f"{path}:3"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "the file has no rows"),
        ("blank.jsonl", b"\n  \n", "the file has no rows"),
        ("bad.jsonl", b'{"instruction": "ok"}\n{"instruction": oops}\n', r"bad.jsonl:2: malformed JSON"),
        ("list.jsonl", b'["instruction"]\n', r"list.jsonl:1: expected a JSON object"),
        (
            "latin1.jsonl",
            '{"instruction": "ok"}\n{"instruction": "café"}\n'.encode("latin-1"),
            r"latin1.jsonl:2: not UTF-8",
        ),
        ("nocol.jsonl", b'{"question": "x"}\n', r"nocol.jsonl: no column 'instruction'.*\['question'\]"),
        ("obj.json", b'{"instruction": "x"}', r"expected a JSON array"),
        ("items.json", b'[{"instruction": "x"}, 3]', r"item 1: expected an object"),
        ("broken.parquet", b"PAR1 not really", r"not a readable Parquet file"),
        ("data.txt", b"hello", r"unsupported file type"),
    ],
)
def test_bad_files_name_file_row_and_problem(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(PromptSourceError, match=message):
        read_files([str(path)], {})


def test_missing_file_and_empty_path_list(tmp_path: Path) -> None:
    with pytest.raises(PromptSourceError, match="no such file"):
        read_files([str(tmp_path / "nope.jsonl")], {})
    with pytest.raises(PromptSourceError, match="paths is empty"):
        read_files([], {})


def test_limit_applies_to_any_source() -> None:
    assert len(read_source(SourceSettings(kind="embedded", limit=5))) == 5


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    texts = ["one\u2028two", "three\u2029four", "five\x85six"]
    path = tmp_path / "p.jsonl"
    path.write_bytes(("\r\n".join(json.dumps({"instruction": t}, ensure_ascii=False) for t in texts) + "\n").encode())
    rows = read_files([str(path)], {})
    assert [r.values["instruction"] for r in rows] == texts
    assert [r.source_ref for r in rows] == [f"{path}:1", f"{path}:2", f"{path}:3"]


def test_csv_rows_are_numbered_by_the_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('instruction,topic\n"line one\nline two",x\nsecond,y\n\nthird,z\n', encoding="utf-8")
    rows = read_files([str(path)], {})
    assert [(r.source_ref, r.values["instruction"]) for r in rows] == [
        (f"{path}:line 2", "line one\nline two"),
        (f"{path}:line 4", "second"),
        (f"{path}:line 5", None),
        (f"{path}:line 6", "third"),
    ]


def test_a_csv_column_named_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("instruction,topic,instruction\na,b,c\n", encoding="utf-8")
    with pytest.raises(PromptSourceError, match=r"p\.csv:1: column\(s\) \['instruction'\] appear more than once"):
        read_files([str(path)], {})


DEEP = 5_000
NEST = "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("deep.jsonl", '{"instruction": "fine"}\n' + NEST + "\n", "deep.jsonl:2"),
        (
            "deep-value.jsonl",
            '{"instruction": "fine"}\n\n{"instruction": "x", "n": ' + NEST + "}\n",
            "deep-value.jsonl:3",
        ),
        ("deep.json", '[\n{"instruction": "fine"},\n' + NEST + "\n]", "deep.json:3"),
        ("deep-data.json", '{"data": [{"instruction": "x", "n": ' + NEST + "}]}", "deep-data.json:1"),
    ],
)
def test_deeply_nested_json_names_the_file_and_line(tmp_path: Path, name: str, content: str, where: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(PromptSourceError) as raised:
        read_files([str(path)], {})
    assert str(raised.value) == f"{tmp_path / where}: JSON nested deeper than 32 levels"
    # nesting within the bound is read, and brackets inside strings are no nesting
    row = {"instruction": "[" * DEEP, "n": json.loads("[" * 30 + "]" * 30)}
    fine = _write(tmp_path / f"fine-{name}", json.dumps([row]) if name.endswith(".json") else json.dumps(row))
    assert [r.values for r in read_files([str(fine)], {})] == [row]


def test_deeply_nested_parquet_values_name_the_row(tmp_path: Path) -> None:
    value: object = "leaf"
    for _ in range(40):
        value = [value]
    pl.DataFrame({"instruction": ["fine", "deep"], "nested": [None, value]}).write_parquet(tmp_path / "p.parquet")
    with pytest.raises(PromptSourceError, match=r"p\.parquet:row 2: value nested deeper than 32 levels"):
        read_files([str(tmp_path / "p.parquet")], {})


def test_a_line_over_the_size_bound_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pref_assets.core.limits.MAX_ROW_CHARS", 1_000)
    path = _write(tmp_path / "big.jsonl", '{"instruction": "fine"}\n' + json.dumps({"instruction": "y" * 2_000}) + "\n")
    with pytest.raises(PromptSourceError, match=r"big\.jsonl:2: the line is 2019 characters, over the limit of 1000"):
        read_files([str(path)], {})


def test_a_directory_is_named_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "prompts.jsonl"
    folder.mkdir()
    with pytest.raises(PromptSourceError, match=r"prompts\.jsonl: is a directory, not a prompt file"):
        read_files([str(folder)], {})


def test_a_csv_field_larger_than_the_csv_modules_limit_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.csv", "instruction\n" + "x" * 200_000 + "\nfine\n")
    rows = read_files([str(path)], {})
    assert [(r.source_ref, len(r.values["instruction"])) for r in rows] == [
        (f"{path}:line 2", 200_000),
        (f"{path}:line 3", 4),
    ]


def test_a_nul_in_a_csv_prompt_is_a_failed_row_naming_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "instruction\nfine\nhello\x00world\n")
    rows = normalize_rows(read_files([str(path)], {}), {}, max_chars=100)
    assert [r.status for r in rows] == ["ok", "failed"]
    assert rows[1].reason == (
        f"control_character: U+0000 (NUL) in the instruction at character 6 of {path}:line 3; remove it from the source"
    )
