"""The near-duplicate index of a prompt source: per row, the earlier kept prompt it nearly repeats.

For files and Hub datasets the index is built in one pass over the whole source (a chunk of rows at a time) and
stored beside the row index (``<storage_dir>/index/near-*.arrow``, one row per source row: ``near``, the source
position of the kept prompt, and ``similarity``), once per source version and dedupe settings; a batch reads its
slice. The embedded set and a watched folder's file are small: their rows up to the batch's end are checked in
memory. Rows are read as the ``prompts`` step reads them (normalized, their words by ``prompt_words``), and a row
that step fails ``contaminated`` is never kept, so a near-duplicate always names a prompt that stays; the
benchmarks' versions are part of the stored index's key. The logic (shingles, MinHash, LSH) is
``pref_assets.core.dedupe``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

from pref_assets.core.decontam import BenchmarkIndex, first_contamination
from pref_assets.core.dedupe import DEDUPE_VERSION, MinHasher, NearDuplicateFinder, prompt_words, shingle_hashes
from pref_assets.core.prompts import RawRow, normalize_rows
from pref_assets.core.rows import PromptRow
from pref_assets.settings import DedupeSettings
from pref_assets.sources.index import RowIndex, stored_table, version_digest

CHUNK = 20_000
# A chunk of source rows and, per row, whether it is already known not to count (an exact repeat found by the row
# index, or a row that fails): such a row is neither checked nor kept.
Chunk = tuple[Sequence[RawRow], Sequence[bool]]


def find_near(
    chunks: Iterable[Chunk],
    mapping: Mapping[str, str],
    max_chars: int,
    dedupe: DedupeSettings,
    benchmarks: Sequence[BenchmarkIndex] = (),
) -> tuple[list[int | None], list[float | None]]:
    """Return, per source row in order, the position of the kept row it nearly repeats (or None) and the
    estimated similarity. The rows not known to fail or repeat are normalized as the ``prompts`` step does; one
    that fails, repeats or overlaps one of ``benchmarks`` (so is failed ``contaminated``) is not kept."""
    finder = NearDuplicateFinder(dedupe.near_duplicate_threshold, dedupe.num_perm)
    hasher = MinHasher(dedupe.num_perm)
    near: list[int | None] = []
    similarity: list[float | None] = []
    for rows, known in chunks:
        normal = iter(normalize_rows([r for r, k in zip(rows, known, strict=True) if not k], mapping,
                                     max_chars=max_chars))  # fmt: skip
        shingles = [[] if k else shingle_hashes(_kept_words(next(normal), benchmarks), dedupe.shingle_words)
                    for k in known]  # fmt: skip
        for found in finder.add(hasher.signatures(shingles), [not s for s in shingles]):
            near.append(None if found is None else found.position)
            similarity.append(None if found is None else found.similarity)
    return near, similarity


def _kept_words(row: PromptRow, benchmarks: Sequence[BenchmarkIndex]) -> list[str]:
    """Return the words of a row that can be kept, or none for a row that fails, repeats or is contaminated."""
    if not row.ok:
        return []
    tokens = prompt_words(row)
    return [] if first_contamination(tokens, benchmarks) is not None else tokens


def known_repeats(index: RowIndex, lo: int, hi: int) -> list[bool]:
    """Return, for rows [lo, hi) of a row index, whether each is known not to count: it fails (no key) or repeats
    an earlier row of its file."""
    part = index.slice(lo, hi)
    return [k is None or f != lo + i for i, (k, f) in enumerate(zip(part["key"], part["first"], strict=True))]


def near_in_memory(
    rows: Sequence[RawRow],
    mapping: Mapping[str, str],
    max_chars: int,
    dedupe: DedupeSettings,
    benchmarks: Sequence[BenchmarkIndex] = (),
) -> tuple[list[int | None], list[float | None]]:
    """Return ``find_near`` over rows held in memory (rows that fail and repeats among a chunk are not kept)."""
    chunks = ((rows[i : i + CHUNK], [False] * len(rows[i : i + CHUNK])) for i in range(0, len(rows), CHUNK))
    return find_near(chunks, mapping, max_chars, dedupe, benchmarks)


def near_version(dedupe: DedupeSettings, *parts: object) -> str:
    """Return the version digest of a near-duplicate index of a source whose version is ``parts``."""
    settings = (dedupe.near_duplicate_threshold, dedupe.num_perm, dedupe.shingle_words)
    return version_digest("near", DEDUPE_VERSION, *settings, *parts)


def stored_near(
    index_dir: Path | None,
    name: str,
    version: str,
    build: Callable[[], Iterable[Chunk]],
    mapping: Mapping[str, str],
    max_chars: int,
    dedupe: DedupeSettings,
    benchmarks: Sequence[BenchmarkIndex] = (),
) -> RowIndex:
    """Return the stored near-duplicate index ``name``/``version``, building it from ``build()``'s chunks when
    absent. The benchmarks' versions are part of its key: which prompts are kept depends on them."""
    version = version_digest(version, max_chars, *(b.version for b in benchmarks))

    def table() -> RowIndex:
        near, similarity = find_near(build(), mapping, max_chars, dedupe, benchmarks)
        frame = pl.DataFrame({"near": pl.Series(near, dtype=pl.Int64),
                              "similarity": pl.Series(similarity, dtype=pl.Float64)})  # fmt: skip
        return RowIndex(frame.to_arrow(), {"threshold": str(dedupe.near_duplicate_threshold)})

    return stored_table(index_dir, name, version, table)
