"""One batch of a prompt source, read without reading the rest, with the originals its repeats name.

Files and Hub datasets go through their row index (``pref_assets.sources.index``), built once per source version:
the batch reads its own rows, and the index says which of them repeat a prompt of an earlier batch (its row id
and ``source_ref``), so repeats are found across the whole source. The embedded set and a watched folder's file
are small and read whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pref_assets.core.batching import batch_bounds
from pref_assets.core.ids import source_row_ids
from pref_assets.core.prompts import Original, PromptSourceError, RawRow, first_occurrences
from pref_assets.settings import SourceSettings
from pref_assets.sources import read_batch
from pref_assets.sources.hub import read_hub_rows
from pref_assets.sources.index import INDEX_DIR, RowIndex
from pref_assets.sources.indexed import file_index, read_rows, source_ref


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Rows [start, stop) of a source of ``total`` rows (fewer when the source ends first), and the earlier first
    occurrences their repeats name, by duplicate key."""

    rows: list[RawRow]
    start: int
    stop: int
    total: int
    originals: dict[str, Original]


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    index: RowIndex
    start: int  # position of the file's first row in the source


def index_dir(storage_dir: str | Path) -> Path:
    """Return the folder the row indexes of sources are stored in."""
    return Path(storage_dir) / INDEX_DIR


def read_source_batch(source: SourceSettings, key: str, batch_size: int, storage_dir: str | Path) -> SourceBatch:
    """Return batch ``key`` of ``source``; raise PromptSourceError as reading the whole source would."""
    row_key = source_row_ids(key, batch_size)
    if source.kind == "files":
        return _files_batch(source, key, batch_size, index_dir(storage_dir), row_key)
    if source.kind == "hub":
        start, stop = batch_bounds(key, batch_size)
        rows, index = read_hub_rows(source, start, stop, index_dir(storage_dir))
        total = index.rows
        where = f"hub:{source.repo_id}[{source.split}]"
        originals = _originals(index, start, len(rows), lambda line: f"{where}:row {line}", row_key, 0)
        return SourceBatch(rows, start, stop, total, originals)
    rows, (start, stop) = read_batch(source, key, batch_size)
    earlier = first_occurrences(rows[:start], source.columns, max_chars=source.max_prompt_chars, row_key=row_key)
    return SourceBatch(rows[start:stop], start, stop, len(rows), earlier)


def count_rows(source: SourceSettings, storage_dir: str | Path) -> int:
    """Return the number of rows of a ``files`` source from its row indexes (built on first use)."""
    total = sum(f.index.rows for f in _file_indexes(source, index_dir(storage_dir)))
    return min(total, source.limit) if source.limit else total


def _file_indexes(source: SourceSettings, folder: Path) -> list[_File]:
    if not source.paths:
        raise PromptSourceError("source.kind is 'files' but source.paths is empty")
    out, start = [], 0
    for path in map(Path, source.paths):
        index = file_index(path, source.columns, source.max_prompt_chars, folder)
        out.append(_File(path, index, start))
        start += index.rows
    return out


def _files_batch(
    source: SourceSettings, key: str, batch_size: int, folder: Path, row_key: Callable[[int], str]
) -> SourceBatch:
    sources = _file_indexes(source, folder)
    total = sum(f.index.rows for f in sources)
    total = min(total, source.limit) if source.limit else total
    start, stop = batch_bounds(key, batch_size)
    rows: list[RawRow] = []
    originals: dict[str, Original] = {}
    for number, file in enumerate(sources):
        lo, hi = max(start, file.start) - file.start, min(stop, total, file.start + file.index.rows) - file.start
        if lo >= hi:
            continue
        rows += read_rows(file.path, file.index, lo, hi)
        here = _originals(file.index, lo, hi - lo, lambda n, p=file.path: source_ref(p, n), row_key, file.start)
        originals.update(here)
        originals.update(_earlier_files(sources[:number], file.index, lo, hi, row_key))
    return SourceBatch(rows, start, stop, total, originals)


def _originals(
    index: RowIndex, lo: int, n_rows: int, ref: Callable[[int], str], row_key: Callable[[int], str], base: int
) -> dict[str, Original]:
    """Return the originals before position ``lo`` in this file of the rows [lo, lo + n_rows) that repeat them."""
    part = index.slice(lo, lo + n_rows)
    return {
        key.hex(): Original(row_key(base + first), ref(line))
        for key, first, line in zip(part["key"], part["first"], part["first_line"], strict=True)
        if key is not None and first < lo
    }


def _earlier_files(
    earlier: Sequence[_File], index: RowIndex, lo: int, hi: int, row_key: Callable[[int], str]
) -> dict[str, Original]:
    """Return the originals in earlier files of the rows [lo, hi) first seen in their own file."""
    part = index.slice(lo, hi)
    wanted = [k for k, first, pos in zip(part["key"], part["first"], range(lo, hi), strict=True) if first == pos]
    found: dict[str, Original] = {}
    for file in earlier:
        for key, (first, line) in file.index.find([k for k in wanted if k.hex() not in found]).items():
            found[key.hex()] = Original(row_key(file.start + first), source_ref(file.path, line))
    return found
