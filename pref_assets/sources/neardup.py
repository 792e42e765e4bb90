"""The near-duplicate index of a prompt source: per row, the earlier kept prompt it nearly repeats.

For files and Hub datasets the index is built in one pass over the whole source (a chunk of rows at a time) and
stored beside the row index (``<storage_dir>/index/near-*.arrow``, one row per source row: ``near``, the source
position of the kept prompt, and ``similarity``), once per source version and dedupe settings; a batch reads its
slice. The embedded set and a watched folder's file are small: their rows up to the batch's end are checked in
memory. The logic (shingles, MinHash, LSH) is ``pref_assets.core.dedupe``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pref_assets.core.dedupe import DEDUPE_VERSION, MinHasher, NearDuplicateFinder, shingle_hashes, words
from pref_assets.core.prompts import RawRow, normalize_rows, parse_messages
from pref_assets.settings import DedupeSettings
from pref_assets.sources.index import RowIndex, stored_table, version_digest

CHUNK = 20_000
# A chunk of source rows and, per row, whether it is already known not to count (an exact repeat found by the row
# index, or a row that fails): such a row is neither checked nor kept.
Chunk = tuple[Sequence[RawRow], Sequence[bool]]


def find_near(
    chunks: Iterable[Chunk], mapping: Mapping[str, str], dedupe: DedupeSettings
) -> tuple[list[int | None], list[float | None]]:
    """Return, per source row in order, the position of the kept row it nearly repeats (or None) and the
    estimated similarity. A row not known to fail or repeat is one that passes normalization (the row index's
    keys say so)."""
    finder = NearDuplicateFinder(dedupe.near_duplicate_threshold, dedupe.num_perm)
    hasher = MinHasher(dedupe.num_perm)
    near: list[int | None] = []
    similarity: list[float | None] = []
    for rows, known in chunks:
        shingles = [[] if k else shingle_hashes(_words(r.values, mapping), dedupe.shingle_words)
                    for r, k in zip(rows, known, strict=True)]  # fmt: skip
        skip = [k or not s for k, s in zip(known, shingles, strict=True)]
        for found in finder.add(hasher.signatures(shingles), skip):
            near.append(None if found is None else found.position)
            similarity.append(None if found is None else found.similarity)
    return near, similarity


def known_repeats(index: RowIndex, lo: int, hi: int) -> list[bool]:
    """Return, for rows [lo, hi) of a row index, whether each is known not to count: it fails (no key) or repeats
    an earlier row of its file."""
    part = index.slice(lo, hi)
    return [k is None or f != lo + i for i, (k, f) in enumerate(zip(part["key"], part["first"], strict=True))]


def near_in_memory(rows: Sequence[RawRow], mapping: Mapping[str, str], max_chars: int,
                   dedupe: DedupeSettings) -> tuple[list[int | None], list[float | None]]:  # fmt: skip
    """Return ``find_near`` over rows held in memory (rows that fail and repeats among them are not counted)."""
    known = [not p.ok for p in normalize_rows(rows, mapping, max_chars=max_chars)]
    chunks = ((rows[i : i + CHUNK], known[i : i + CHUNK]) for i in range(0, len(rows), CHUNK))
    return find_near(chunks, mapping, dedupe)


def _words(values: Mapping[str, Any], mapping: Mapping[str, str]) -> list[str]:
    """Return the normalized words of a source row that passes normalization (known from the row index): its
    system prompt and its conversation, or its instruction."""
    texts = []
    system = values.get(mapping.get("system_prompt", "system_prompt"))
    if system is not None:
        texts.append(str(system))
    messages = values.get(mapping.get("messages", "messages"))
    if messages is not None:
        turns, problem = parse_messages(messages)
        texts += [] if problem else [m["content"] for m in turns]
    else:
        instruction = values.get(mapping.get("instruction", "instruction"))
        texts += [instruction] if isinstance(instruction, str) else []
    return words(" ".join(texts))


def near_version(dedupe: DedupeSettings, *parts: object) -> str:
    """Return the version digest of a near-duplicate index of a source whose version is ``parts``."""
    settings = (dedupe.near_duplicate_threshold, dedupe.num_perm, dedupe.shingle_words)
    return version_digest("near", DEDUPE_VERSION, *settings, *parts)


def stored_near(index_dir: Path | None, name: str, version: str, build: Callable[[], Iterable[Chunk]],
                mapping: Mapping[str, str], dedupe: DedupeSettings) -> RowIndex:  # fmt: skip
    """Return the stored near-duplicate index ``name``/``version``, building it from ``build()``'s chunks when
    absent."""

    def table() -> RowIndex:
        near, similarity = find_near(build(), mapping, dedupe)
        frame = pl.DataFrame({"near": pl.Series(near, dtype=pl.Int64),
                              "similarity": pl.Series(similarity, dtype=pl.Float64)})  # fmt: skip
        return RowIndex(frame.to_arrow(), {"threshold": str(dedupe.near_duplicate_threshold)})

    return stored_table(index_dir, name, version, table)
