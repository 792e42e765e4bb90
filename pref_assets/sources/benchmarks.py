"""Benchmark prompts for decontamination (``decontaminate:``): files or Hub datasets, read bounded, indexed once per
benchmark version in each process.

Files go through the prompt-file readers (``pref_assets.sources.files``: size, row and nesting bounds, errors naming
``file:line``); Hub rows are checked against the same row bounds. Without a ``limit``, a benchmark of more than
``MAX_BENCHMARK_ROWS`` rows (files or Hub split) is refused naming it, before its rows are indexed. A cell of a
listed column is text, or a list of chat turns whose text contents are joined; other values are no text. A benchmark
that cannot be read stops the ``prompts`` step naming it: prompts are never let through unchecked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pref_assets.core.decontam import BenchmarkIndex
from pref_assets.core.dedupe import words
from pref_assets.core.limits import benchmark_rows_problem
from pref_assets.core.prompts import PromptSourceError, RawRow
from pref_assets.core.text import describe_columns
from pref_assets.settings import BenchmarkSettings, SourceSettings
from pref_assets.sources import files
from pref_assets.sources.hub import load_hub_dataset

_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], BenchmarkIndex] = {}
_CACHE_SIZE = 8


def benchmark_indexes(benchmarks: Sequence[BenchmarkSettings]) -> list[BenchmarkIndex]:
    """Return the index of every configured benchmark, in order; raise PromptSourceError naming one that cannot be
    read."""
    return [benchmark_index(b) for b in benchmarks]


def benchmark_index(benchmark: BenchmarkSettings) -> BenchmarkIndex:
    """Return the index of one benchmark: built on first use, then kept while its files do not change."""
    key = (benchmark.model_dump_json(), _file_stamps(benchmark))
    index = _CACHE.get(key)
    if index is None:
        index = build_benchmark_index(benchmark)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = index
    return index


def build_benchmark_index(benchmark: BenchmarkSettings) -> BenchmarkIndex:
    """Return the index of ``benchmark``'s prompts (at most ``limit`` rows; without one, at most
    ``MAX_BENCHMARK_ROWS``, else PromptSourceError)."""
    index = BenchmarkIndex(benchmark.name, benchmark.ngram_words, benchmark.min_overlap)
    for number, row in enumerate(_rows(benchmark)):
        if benchmark.limit is not None and number >= benchmark.limit:
            break
        text = " ".join(t for t in (_text(row.values.get(c)) for c in benchmark.columns) if t)
        index.add(words(text), row.source_ref)
    return index


def _rows(benchmark: BenchmarkSettings) -> Iterator[RawRow]:
    if benchmark.kind == "files":
        count = 0
        for path in map(Path, benchmark.paths):
            rows = files.read_file(path)
            _check_columns(rows, benchmark, str(path))
            count += len(rows)
            if benchmark.limit is None:
                _check_size(benchmark, str(path), count)
            yield from rows
        return
    source = SourceSettings(kind="hub", repo_id=benchmark.repo_id, split=benchmark.split, revision=benchmark.revision)
    try:
        dataset = load_hub_dataset(source, benchmark.config)
    except PromptSourceError as err:
        raise PromptSourceError(f"benchmark {benchmark.name!r}: {err}") from None
    where = f"hub:{benchmark.repo_id}[{benchmark.split}]"
    _check_columns([RawRow(where, dict.fromkeys(dataset.column_names))], benchmark, where)
    if benchmark.limit is None:
        _check_size(benchmark, where, len(dataset))
    total = len(dataset) if benchmark.limit is None else min(len(dataset), benchmark.limit)
    columns = dataset.select_columns([c for c in benchmark.columns if c in dataset.column_names])
    for start in range(0, total, 5_000):
        for i, values in enumerate(columns.select(range(start, min(start + 5_000, total)))):
            ref = f"{where}:row {start + i + 1}"
            files.check_row(values, f"benchmark {benchmark.name!r}: {ref}")
            yield RawRow(ref, values)


def _check_size(benchmark: BenchmarkSettings, where: str, rows: int) -> None:
    problem = benchmark_rows_problem(benchmark.name, where, rows)
    if problem is not None:
        raise PromptSourceError(problem)


def _check_columns(rows: Sequence[RawRow], benchmark: BenchmarkSettings, where: str) -> None:
    present = {name for row in rows for name in row.values}
    if not present & set(benchmark.columns):
        raise PromptSourceError(
            f"benchmark {benchmark.name!r}: {where}: none of the columns {benchmark.columns} "
            f"({describe_columns(present)})"
        )


def _text(value: Any) -> str | None:
    """Return a cell's text: a string, or the text contents of a list of chat turns joined; None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [m.get("content") for m in value if isinstance(m, Mapping)]
        return " ".join(p for p in parts if isinstance(p, str)) or None
    return None


def _file_stamps(benchmark: BenchmarkSettings) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in map(Path, benchmark.paths):
        try:
            info = path.stat()
        except OSError:
            stamps.append((str(path), -1, -1))  # read (and refused with its reason) when the index is built
            continue
        stamps.append((str(path.resolve()), info.st_size, info.st_mtime_ns))
    return tuple(stamps)
