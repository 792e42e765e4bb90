"""One batch of a prompt source, read without reading the rest, with the originals its repeats name.

Files and Hub datasets go through their row index (``pref_assets.sources.index``), built once per source version:
the batch reads its own rows, and the index says which of them repeat a prompt of an earlier batch (its row id
and ``source_ref``), so repeats are found across the whole source. Near-duplicates are found the same way, through
the source's near-duplicate index (``pref_assets.sources.neardup``). The embedded set and a watched folder's file
are small and read whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pref_assets.core.batching import batch_bounds
from pref_assets.core.decontam import BenchmarkIndex
from pref_assets.core.dedupe import NearOriginal
from pref_assets.core.ids import source_row_ids
from pref_assets.core.prompts import Original, PromptSourceError, RawRow, first_occurrences
from pref_assets.settings import DedupeSettings, SourceSettings
from pref_assets.sources import files, read_batch
from pref_assets.sources.hub import read_hub_rows
from pref_assets.sources.index import INDEX_DIR, RowIndex, file_version, version_digest
from pref_assets.sources.indexed import file_index, read_rows, source_ref
from pref_assets.sources.neardup import CHUNK, Chunk, known_repeats, near_in_memory, near_version, stored_near


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Rows [start, stop) of a source of ``total`` rows (fewer when the source ends first), the earlier first
    occurrences their repeats name, by duplicate key, and the kept prompts their near-duplicates name, by position
    in ``rows``."""

    rows: list[RawRow]
    start: int
    stop: int
    total: int
    originals: dict[str, Original]
    near: dict[int, NearOriginal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    index: RowIndex
    start: int  # position of the file's first row in the source


def index_dir(storage_dir: str | Path) -> Path:
    """Return the folder the row indexes of sources are stored in."""
    return Path(storage_dir) / INDEX_DIR


def read_source_batch(
    source: SourceSettings,
    key: str,
    batch_size: int,
    storage_dir: str | Path,
    dedupe: DedupeSettings | None = None,
    benchmarks: Sequence[BenchmarkIndex] = (),
) -> SourceBatch:
    """Return batch ``key`` of ``source``; raise PromptSourceError as reading the whole source would. With
    ``dedupe`` (and ``dedupe.near_duplicates``) the batch also names the near-duplicates' kept prompts (never a
    prompt contaminated by one of ``benchmarks``)."""
    row_key = source_row_ids(key, batch_size)
    dedupe = dedupe if dedupe is not None and dedupe.near_duplicates else None
    if source.kind == "files":
        return _files_batch(source, key, batch_size, index_dir(storage_dir), row_key, dedupe, benchmarks)
    if source.kind == "hub":
        start, stop = batch_bounds(key, batch_size)
        rows, index, near_index = read_hub_rows(source, start, stop, index_dir(storage_dir), dedupe, benchmarks)
        total = index.rows
        where = f"hub:{source.repo_id}[{source.split}]"
        originals = _originals(index, start, len(rows), lambda line: f"{where}:row {line}", row_key, 0)
        near = {}
        if near_index is not None:
            near = _near(near_index, start, len(rows), lambda p: f"{where}:row {p + 1}", row_key)
        return SourceBatch(rows, start, stop, total, originals, near)
    rows, (start, stop) = read_batch(source, key, batch_size)
    earlier = first_occurrences(rows[:start], source.columns, max_chars=source.max_prompt_chars, row_key=row_key)
    near = {}
    if dedupe is not None:
        found, similarity = near_in_memory(rows[:stop], source.columns, source.max_prompt_chars, dedupe, benchmarks)
        near = {
            i - start: NearOriginal(row_key(p), rows[p].source_ref, s)
            for i, (p, s) in enumerate(zip(found, similarity, strict=True))
            if i >= start and p is not None and s is not None
        }
    return SourceBatch(rows[start:stop], start, stop, len(rows), earlier, near)


def _near(
    index: RowIndex, start: int, n_rows: int, ref: Callable[[int], str], row_key: Callable[[int], str]
) -> dict[int, NearOriginal]:
    """Return, by position in the batch, the kept prompts the near-duplicates among rows [start, start + n_rows)
    name; ``ref`` gives the ``source_ref`` of a source position."""
    part = index.slice(start, start + n_rows)
    return {
        i: NearOriginal(row_key(p), ref(p), s)
        for i, (p, s) in enumerate(zip(part["near"], part["similarity"], strict=True))
        if p is not None
    }


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
    source: SourceSettings,
    key: str,
    batch_size: int,
    folder: Path,
    row_key: Callable[[int], str],
    dedupe: DedupeSettings | None,
    benchmarks: Sequence[BenchmarkIndex],
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
    near = {}
    if dedupe is not None and rows:
        index = _files_near(source, sources, total, folder, dedupe, benchmarks)
        near = _near(index, start, len(rows), lambda p: _files_ref(sources, p), row_key)
    return SourceBatch(rows, start, stop, total, originals, near)


def _files_near(
    source: SourceSettings,
    sources: Sequence[_File],
    total: int,
    folder: Path,
    dedupe: DedupeSettings,
    benchmarks: Sequence[BenchmarkIndex],
) -> RowIndex:
    """Return the near-duplicate index of the first ``total`` rows of a files source (built once per version)."""
    mapping, max_chars = source.columns, source.max_prompt_chars
    name = f"near-{version_digest(*(f.path.resolve() for f in sources))[:8]}"
    version = near_version(dedupe, *(file_version(f.path, mapping, max_chars)[1] for f in sources), total)

    def chunks() -> Iterator[Chunk]:
        for file in sources:
            count = min(file.index.rows, total - file.start)
            whole = files.read_file(file.path) if file.path.suffix.lower() == ".json" and count > 0 else None
            for lo in range(0, max(count, 0), CHUNK):
                hi = min(lo + CHUNK, count)
                rows = whole[lo:hi] if whole is not None else read_rows(file.path, file.index, lo, hi)
                yield rows, known_repeats(file.index, lo, hi)

    return stored_near(folder, name, version, chunks, mapping, max_chars, dedupe, benchmarks)


def _files_ref(sources: Sequence[_File], position: int) -> str:
    """Return the ``source_ref`` of the row at ``position`` of a files source."""
    file = next(f for f in reversed(sources) if f.start <= position)
    line = file.index.slice(position - file.start, position - file.start + 1)["line"][0]
    return source_ref(file.path, line)


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
