"""Prompt files read a batch at a time through their row index (``pref_assets.sources.index``).

The index is built in one pass that checks the whole file exactly as ``read_file`` does (a file that cannot be
read fails every batch with the same ``file:line: problem``): JSONL is streamed line by line, CSV and JSON are
read whole, Parquet a record batch at a time. A batch then reads only its rows: JSONL and CSV their byte ranges,
Parquet its slice of row groups; a JSON array (one document) is read whole.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from pref_assets.core import limits
from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns
from pref_assets.sources import files
from pref_assets.sources.dupkeys import duplicate_keys
from pref_assets.sources.index import RowIndex, Scan, file_version, stored_index

_CHUNK = 20_000
_REFS = {".jsonl": "{path}:{line}", ".csv": "{path}:line {line}", ".parquet": "{path}:row {line}"}
_LINE_END = re.compile(rb"\r\n|\r|\n")  # what the csv module (through io.StringIO(newline="")) counts as a line


def file_index(path: Path, mapping: Mapping[str, str], max_chars: int, index_dir: Path | None) -> RowIndex:
    """Return the row index of prompt file ``path``; raise PromptSourceError as ``read_checked_file`` would."""
    files.check_regular_file(path)
    scanners = {".jsonl": _scan_jsonl, ".csv": _scan_csv, ".parquet": _scan_parquet, ".json": _scan_json}
    scanner = scanners.get(path.suffix.lower())
    if scanner is None:
        raise PromptSourceError(f"{path}: unsupported file type; use one of {', '.join(files.FORMATS)}")
    name, version = file_version(path, mapping, max_chars)
    return stored_index(index_dir, name, version, lambda: _checked_scan(scanner, path, mapping, max_chars))


def source_ref(path: Path, line: int) -> str:
    """Return the ``source_ref`` of the row numbered ``line`` (its line, row or item number) in ``path``."""
    return _REFS.get(path.suffix.lower(), "{path}:item {line}").format(path=path, line=line)


def read_rows(path: Path, index: RowIndex, start: int, stop: int) -> list[RawRow]:
    """Return rows [start, stop) of ``path``, which ``index`` indexes."""
    if stop <= start:
        return []
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path, index.slice(start, stop))
    if suffix == ".parquet":
        return _parquet_rows(path, start, stop)
    if suffix == ".csv" and index.meta.get("ranges") == "1":
        rows = _csv_rows(path, index, start, stop)
        if rows is not None:
            return rows
    return files.read_file(path)[start:stop]


def _checked_scan(scanner: Any, path: Path, mapping: Mapping[str, str], max_chars: int) -> Scan:
    try:
        scan, columns = scanner(path, mapping, max_chars)
    except OSError as err:
        raise PromptSourceError(f"{path}: cannot read the file ({err.strerror or err})") from err
    except RecursionError as err:
        raise PromptSourceError(f"{path}: nested too deeply to read") from err
    if not scan.lines:
        raise PromptSourceError(f"{path}: the file has no rows")
    check_columns(columns, mapping, str(path))
    return scan


def _keys(rows: list[Mapping[str, Any]], mapping: Mapping[str, str], max_chars: int) -> list[bytes | None]:
    names = {mapping.get(f, f) for f in ("instruction", "system_prompt", "messages")}
    columns = {name: [row.get(name) for row in rows] for name in names if any(name in row for row in rows)}
    return duplicate_keys(columns, len(rows), mapping, max_chars=max_chars)


# ---------------------------------------------------------------- JSONL: streamed, byte ranges


def _scan_jsonl(path: Path, mapping: Mapping[str, str], max_chars: int) -> tuple[Scan, set[str]]:
    scan = Scan(offsets=array("q"), lengths=array("q"))
    columns: set[str] = set()
    chunk: list[dict[str, Any]] = []
    try:
        with path.open("rb") as handle:
            position = 0
            for number, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8-sig" if position == 0 else "utf-8").removesuffix("\n").removesuffix("\r")
                if line.strip():
                    value = files.parse_jsonl_line(line, path, number)
                    columns.update(value)
                    chunk.append(value)
                    scan.offsets.append(position)
                    scan.lengths.append(len(raw))
                    scan.lines.append(number)
                    if len(chunk) == _CHUNK:
                        scan.keys += _keys(chunk, mapping, max_chars)
                        chunk = []
                position += len(raw)
    except (UnicodeDecodeError, PromptSourceError) as err:
        # The whole-file reader names the problem it would have met first (a byte that is not UTF-8 anywhere
        # comes before a bad line): raise exactly that.
        files.read_jsonl(path)
        raise PromptSourceError(f"{path}: changed while read ({err})") from None
    scan.keys += _keys(chunk, mapping, max_chars)
    return scan, columns


def _jsonl_rows(path: Path, rows: dict[str, list]) -> list[RawRow]:
    first, last = rows["offset"][0], rows["offset"][-1] + rows["length"][-1]
    with path.open("rb") as handle:
        handle.seek(first)
        data = handle.read(last - first)
    out = []
    for offset, length, number in zip(rows["offset"], rows["length"], rows["line"], strict=True):
        raw = data[offset - first : offset - first + length]
        line = raw.decode("utf-8-sig" if offset == 0 else "utf-8").removesuffix("\n").removesuffix("\r")
        out.append(RawRow(f"{path}:{number}", files.parse_jsonl_line(line, path, number)))
    return out


# ---------------------------------------------------------------- CSV: read whole once, byte ranges after


def _scan_csv(path: Path, mapping: Mapping[str, str], max_chars: int) -> tuple[Scan, set[str]]:
    rows, by_start = files.read_csv_layout(path)
    scan = Scan(meta={"ranges": "1" if by_start else "0"})
    scan.lines.extend(int(r.source_ref.rsplit(" ", 1)[1]) for r in rows)
    scan.keys = _keys([r.values for r in rows], mapping, max_chars)
    if by_start and rows:
        data = path.read_bytes()
        line_starts = [0, *(m.end() for m in _LINE_END.finditer(data))]
        scan.offsets = array("q", (line_starts[n - 1] for n in scan.lines))
        ends = [*scan.offsets[1:], len(data)]
        scan.lengths = array("q", (end - start for start, end in zip(scan.offsets, ends, strict=True)))
        scan.meta["header_end"] = str(scan.offsets[0])
    return scan, {name for row in rows for name in row.values}


def _csv_rows(path: Path, index: RowIndex, start: int, stop: int) -> list[RawRow] | None:
    """Return the rows read from their byte ranges under the header, or None when polars reads them differently."""
    rows = index.slice(start, stop)
    first, last = rows["offset"][0], rows["offset"][-1] + rows["length"][-1]
    with path.open("rb") as handle:
        header = handle.read(int(index.meta["header_end"]))
        handle.seek(first)
        body = handle.read(last - first)
    try:
        frame = pl.read_csv((header + body).decode("utf-8-sig").encode("utf-8"), infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return None
    if frame.height != len(rows["line"]):
        return None
    out = [RawRow(f"{path}:line {n}", v) for n, v in zip(rows["line"], frame.iter_rows(named=True), strict=True)]
    for row in out:
        files.check_row(row.values, row.source_ref)
    return out


# ---------------------------------------------------------------- Parquet: record batches, sliced reads


def _scan_parquet(path: Path, mapping: Mapping[str, str], max_chars: int) -> tuple[Scan, set[str]]:
    import pyarrow.parquet as pq  # here: only Parquet sources need it, and it is slow to import

    scan = Scan()
    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=65_536)
        columns = set(parquet.schema_arrow.names)
        position = 0
        for batch in batches:
            frame = pl.from_arrow(batch)
            _check_parquet_rows(frame, path, position)
            names = {mapping.get(f, f) for f in ("instruction", "system_prompt", "messages")} & columns
            scan.keys += duplicate_keys(
                {n: frame.get_column(n).to_list() for n in names}, frame.height, mapping, max_chars=max_chars
            )
            scan.lines.extend(range(position + 1, position + frame.height + 1))
            position += frame.height
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        if isinstance(err, PromptSourceError):
            raise
        raise PromptSourceError(f"{path}: not a readable Parquet file: {err}") from err
    return scan, columns


def _check_parquet_rows(frame: pl.DataFrame, path: Path, position: int) -> None:
    """Check each row's bounds: column-wise when every column is flat, else row by row."""
    if any(dtype.is_nested() or dtype == pl.Object for dtype in frame.dtypes):
        for i, values in enumerate(frame.iter_rows(named=True)):
            files.check_row(values, f"{path}:row {position + i + 1}")
        return
    sizes = [pl.col(n).str.len_chars() for n, t in frame.schema.items() if t == pl.String]
    sizes += [pl.col(n).bin.size() for n, t in frame.schema.items() if t == pl.Binary]
    if not sizes:
        return
    chars = frame.select(pl.sum_horizontal(sizes).fill_null(0) + sum(map(len, frame.columns))).to_series()
    over = (chars > limits.MAX_ROW_CHARS).arg_true()
    if len(over):
        values = frame.row(int(over[0]), named=True)
        files.check_row(values, f"{path}:row {position + int(over[0]) + 1}")


def _parquet_rows(path: Path, start: int, stop: int) -> list[RawRow]:
    try:
        frame = pl.scan_parquet(path).slice(start, stop - start).collect()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise PromptSourceError(f"{path}: not a readable Parquet file: {err}") from err
    rows = [RawRow(f"{path}:row {start + i + 1}", row) for i, row in enumerate(frame.iter_rows(named=True))]
    for row in rows:
        files.check_row(row.values, row.source_ref)
    return rows


# ---------------------------------------------------------------- JSON: one document, read whole


def _scan_json(path: Path, mapping: Mapping[str, str], max_chars: int) -> tuple[Scan, set[str]]:
    rows = files.read_file(path)
    scan = Scan()
    scan.lines.extend(range(len(rows)))
    scan.keys = _keys([r.values for r in rows], mapping, max_chars)
    return scan, {name for row in rows for name in row.values}
