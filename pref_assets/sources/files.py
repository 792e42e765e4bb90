"""Local prompt files: JSONL, JSON, Parquet, CSV. Errors name the file, the row and the problem.

What is read is bounded before it is parsed (``pref_assets.core.limits``): the file's size, each row's size, and
how deeply JSON nests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pref_assets.core import limits
from pref_assets.core.limits import MAX_FILE_BYTES, json_too_deep_at, size_problem, too_deep, value_problem
from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns
from pref_assets.core.text import encodable_values

FORMATS = (".jsonl", ".json", ".parquet", ".csv")


def read_files(paths: Sequence[str], mapping: Mapping[str, str]) -> list[RawRow]:
    """Return the rows of every file, in the order given; raise on any unreadable file."""
    if not paths:
        raise PromptSourceError("source.kind is 'files' but source.paths is empty")
    rows: list[RawRow] = []
    for path in map(Path, paths):
        rows.extend(read_checked_file(path, mapping))
    return rows


def read_checked_file(path: Path, mapping: Mapping[str, str]) -> list[RawRow]:
    """Return the rows of one file; raise if it lacks the instruction (or messages) column ``mapping`` names."""
    rows = read_file(path)
    check_columns(_columns(rows), mapping, str(path))
    return rows


def read_file(path: Path) -> list[RawRow]:
    """Return the rows of one file, chosen by its suffix."""
    check_regular_file(path)
    readers = {".jsonl": read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise PromptSourceError(f"{path}: unsupported file type; use one of {', '.join(FORMATS)}")
    try:
        rows = reader(path)
    except OSError as err:  # permissions, removed while read, I/O errors
        raise PromptSourceError(f"{path}: cannot read the file ({err.strerror or err})") from err
    except RecursionError as err:  # a reader's nesting bound missed a case: still this file's problem only
        raise PromptSourceError(f"{path}: nested too deeply to read") from err
    if not rows:
        raise PromptSourceError(f"{path}: the file has no rows")
    return rows


def read_jsonl(path: Path) -> list[RawRow]:
    """Return one row per non-blank line; a malformed line raises with its line number."""
    rows = []
    # Lines end at "\n" only: JSON strings may hold U+2028, U+2029 or U+0085, which str.splitlines() would split at.
    for number, line in enumerate(decode_file(path).split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            rows.append(RawRow(f"{path}:{number}", parse_jsonl_line(line, path, number)))
    return rows


def parse_jsonl_line(line: str, path: Path, number: int) -> dict[str, Any]:
    """Return the object on JSONL line ``number`` (not blank, line end removed); raise naming ``path:number``."""
    problem = size_problem(len(line), "the line")
    if problem:
        raise PromptSourceError(f"{path}:{number}: {problem}")
    value = _parse_json(line, f"{path}:{number}")
    if not isinstance(value, dict):
        raise PromptSourceError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_json(path: Path) -> list[RawRow]:
    text = decode_file(path)
    deep = json_too_deep_at(text)
    if deep is not None:
        raise PromptSourceError(f"{path}:{text.count(chr(10), 0, deep) + 1}: {too_deep()}")
    value = _parse_json(text, str(path))
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise PromptSourceError(f"{path}: expected a JSON array of objects (or {{'data': [...]}})")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise PromptSourceError(f"{path}: item {index}: expected an object, got {type(item).__name__}")
        check_row(item, f"{path}: item {index}")
    return [RawRow(f"{path}:item {i}", item) for i, item in enumerate(value)]


def _read_parquet(path: Path) -> list[RawRow]:
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise PromptSourceError(f"{path}: not a readable Parquet file: {err}") from err
    rows = [RawRow(f"{path}:row {i + 1}", row) for i, row in enumerate(frame.iter_rows(named=True))]
    for row in rows:
        check_row(row.values, row.source_ref)
    return rows


def _read_csv(path: Path) -> list[RawRow]:
    return read_csv_layout(path)[0]


def read_csv_layout(path: Path) -> tuple[list[RawRow], bool]:
    """Return the rows of a CSV file and whether they are numbered by the line each starts on (False: the csv
    module read the layout differently from polars, and rows are numbered as read)."""
    text = decode_file(path)
    try:
        frame = pl.read_csv(text.encode("utf-8"), infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise PromptSourceError(f"{path}: not a readable CSV file: {err}") from err
    header, lines = _csv_layout(text)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise PromptSourceError(f"{path}:1: column(s) {repeated} appear more than once; rename them")
    by_start = len(lines) == frame.height
    if not by_start:  # a layout the csv module reads differently: number the rows as read
        lines = [i + 2 for i in range(frame.height)]
    rows = [RawRow(f"{path}:line {line}", row) for line, row in zip(lines, frame.iter_rows(named=True), strict=True)]
    for row in rows:
        check_row(row.values, row.source_ref)
    return rows, by_start


def _csv_layout(text: str) -> tuple[list[str], list[int]]:
    """Return the header and the line each record starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    starts: list[int] = []
    try:
        header = next(reader, [])
        last = reader.line_num
        for _ in reader:
            starts.append(last + 1)
            last = reader.line_num
    except csv.Error:  # e.g. a field over the csv module's size limit, which polars read: rows numbered as read
        return header, []
    return header, starts


def check_regular_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file within the size bound."""
    if path.is_dir():
        raise PromptSourceError(f"{path}: is a directory, not a prompt file; name the files in it")
    if not path.exists():
        raise PromptSourceError(f"{path}: no such file")
    if not path.is_file():
        raise PromptSourceError(f"{path}: not a regular file (a pipe, socket or device); give a prompt file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise PromptSourceError(f"{path}: cannot read the file ({err.strerror or err})") from err
    if size > MAX_FILE_BYTES:
        raise PromptSourceError(f"{path}: the file is {size} bytes, over the limit of {MAX_FILE_BYTES}; split it")


def check_row(values: object, where: str) -> None:
    """Raise naming ``where`` when a row's values nest too deeply or hold too much text."""
    problem = value_problem(values)
    if problem:
        raise PromptSourceError(f"{where}: {problem}")


def decode_file(path: Path) -> str:
    """Return the text of a UTF-8 file; raise naming the line and offset of the first byte that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise PromptSourceError(
            f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); re-save the file as UTF-8"
        ) from err


def _parse_json(text: str, where: str) -> Any:
    # JSON with fewer brackets than the bound cannot nest past it: most lines skip the scan
    if text.count("[") + text.count("{") > limits.MAX_DEPTH and json_too_deep_at(text) is not None:
        raise PromptSourceError(f"{where}: {too_deep()}")
    try:
        return encodable_values(json.loads(text))
    except json.JSONDecodeError as err:
        raise PromptSourceError(f"{where}: malformed JSON: {err.msg} (column {err.colno})") from err


def _columns(rows: list[RawRow]) -> set[str]:
    return {name for row in rows for name in row.values}
