"""Near-duplicate prompts: normalized words, word shingles, MinHash signatures and LSH banding.

A prompt's words are its whole conversation's text (system prompt and turns) in the form repeats are compared in
(``duplicate_form``: NFKC, case folded, zero-width characters removed), cut into runs of letters and digits, so
punctuation and spacing do not count. Two prompts are near-duplicates when the Jaccard similarity of their sets of
word ``shingle_words``-grams, estimated by MinHash over ``num_perm`` hash functions, reaches the threshold.

Rows are taken in source order: a row is compared with the earlier *kept* rows only (a row that is neither a repeat
nor a near-duplicate, nor failed for another reason such as ``contaminated``: callers skip those), so a
near-duplicate always names a prompt that stays, and the answer does not depend on how the source is cut into
batches. LSH bands bring up the candidates; each candidate's similarity is estimated from the two whole signatures
and the most similar one at or above the threshold is named.
"""

from __future__ import annotations

import re
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np

from pref_assets.core import status
from pref_assets.core.conversation import prompt_messages
from pref_assets.core.prompts import duplicate_form
from pref_assets.core.rows import PromptRow

NEAR_DUPLICATE = "near_duplicate"
DEDUPE_VERSION = "1"
_WORD = re.compile(r"\w+")


def prompt_words(row: PromptRow) -> list[str]:
    """Return the normalized words of a prompt's whole conversation (empty for a row without text)."""
    if row.instruction is None:
        return []
    turns = prompt_messages(row.instruction, row.system_prompt, row.messages)
    return words(" ".join(m["content"] for m in turns))


def words(text: str) -> list[str]:
    """Return ``text`` in normalized words: runs of letters and digits of its ``duplicate_form``."""
    return _WORD.findall(duplicate_form(text))


def shingle_hashes(tokens: Sequence[str], size: int) -> list[int]:
    """Return a 32-bit hash of every run of ``size`` words (of the whole text when it is shorter)."""
    if not tokens:
        return []
    if len(tokens) <= size:
        return [zlib.crc32(" ".join(tokens).encode("utf-8"))]
    return [zlib.crc32(" ".join(tokens[i : i + size]).encode("utf-8")) for i in range(len(tokens) - size + 1)]


@dataclass(frozen=True, slots=True)
class MinHasher:
    """``num_perm`` hash functions of the multiply-shift family (seeded, so signatures are stable across runs)."""

    num_perm: int = 128
    seed: int = 1
    _a: np.ndarray = field(init=False, repr=False)
    _b: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        object.__setattr__(self, "_a", rng.integers(1, 2**63, self.num_perm, dtype=np.uint64) | np.uint64(1))
        object.__setattr__(self, "_b", rng.integers(0, 2**63, self.num_perm, dtype=np.uint64))

    def signatures(self, shingles: Sequence[Sequence[int]], chunk_rows: int = 4_096) -> np.ndarray:
        """Return one signature (``num_perm`` uint32 minima) per shingle list; a row without shingles gets
        all-ones (it is never compared: see ``NearDuplicateFinder.add``)."""
        out = np.full((len(shingles), self.num_perm), 0xFFFFFFFF, dtype=np.uint32)
        counts = np.fromiter((len(s) for s in shingles), dtype=np.int64, count=len(shingles))
        present = np.flatnonzero(counts)
        # about chunk_rows shingles at a time: the products (num_perm times that many 8-byte values) stay in cache
        start = 0
        while start < len(present):
            stop, total = start, 0
            while stop < len(present) and (total == 0 or total + counts[present[stop]] <= chunk_rows):
                total += counts[present[stop]]
                stop += 1
            rows = present[start:stop]
            flat = np.fromiter(chain.from_iterable(shingles[r] for r in rows), dtype=np.uint64, count=int(total))
            hashed = np.multiply.outer(flat, self._a)  # wraps mod 2**64; the high 32 bits are the hash
            hashed += self._b
            hashed >>= np.uint64(32)
            offsets = np.concatenate(([0], np.cumsum(counts[rows])[:-1]))
            out[rows] = np.minimum.reduceat(hashed, offsets, axis=0).astype(np.uint32)
            start = stop
        return out


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Return (bands, rows per band) whose S-curve best separates similarities around ``threshold``: the weighted
    sum of the false-positive area below it and the false-negative area above it is least. A missed pair is a
    near-duplicate let through, a false candidate only one more signature comparison: misses weigh four times."""
    best, best_cost = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            cost = 0.2 * _area(threshold, bands, rows, below=True) + 0.8 * _area(threshold, bands, rows, below=False)
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


def _area(threshold: float, bands: int, rows: int, *, below: bool, steps: int = 64) -> float:
    lo, hi = (0.0, threshold) if below else (threshold, 1.0)
    width = (hi - lo) / steps
    total = 0.0
    for i in range(steps):
        s = lo + (i + 0.5) * width
        p = 1 - (1 - s**rows) ** bands
        total += (p if below else 1 - p) * width
    return total


@dataclass(frozen=True, slots=True)
class Near:
    """A near-duplicate's kept prompt: its position in the source and the estimated similarity."""

    position: int
    similarity: float


class NearDuplicateFinder:
    """Rows fed in source order, a chunk at a time; each row is checked against the kept rows before it.

    What is held grows with the kept rows only, about 1.3 KB each at 128 hash functions: the signature (4 bytes a
    hash function) in blocks of ``BLOCK`` rows, the row's position, and one entry in each band's table, whose value
    is a kept row's number or, for the few keys shared by several, a list of them.
    """

    BLOCK = 65_536

    def __init__(self, threshold: float, num_perm: int) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._blocks: list[np.ndarray] = []
        self._positions = array("q")
        rng = np.random.default_rng(7)
        self._mix = rng.integers(1, 2**63, self.rows, dtype=np.uint64) | np.uint64(1)
        self._next = 0

    def add(self, signatures: np.ndarray, skip: Sequence[bool]) -> list[Near | None]:
        """Check the next ``len(signatures)`` rows of the source; a skipped row (a repeat, a row without text) is
        neither checked nor kept. Return, per row, the kept row it nearly repeats, or None."""
        keys = self._band_keys(signatures)
        out: list[Near | None] = []
        for i, skipped in enumerate(skip):
            if skipped:
                out.append(None)
                continue
            row_keys = [int(k) for k in keys[i]]
            near = self._match(signatures[i], row_keys)
            out.append(near)
            if near is None:
                self._keep(self._next + i, signatures[i], row_keys)
        self._next += len(skip)
        return out

    def _keep(self, position: int, signature: np.ndarray, keys: list[int]) -> None:
        kept = len(self._positions)
        if kept % self.BLOCK == 0:
            self._blocks.append(np.empty((self.BLOCK, self.num_perm), dtype=np.uint32))
        self._blocks[-1][kept % self.BLOCK] = signature
        self._positions.append(position)
        for table, key in zip(self._tables, keys, strict=True):
            held = table.get(key)
            if held is None:
                table[key] = kept
            elif isinstance(held, list):
                held.append(kept)
            else:
                table[key] = [held, kept]

    def _band_keys(self, signatures: np.ndarray) -> np.ndarray:
        used = signatures[:, : self.bands * self.rows].astype(np.uint64).reshape(len(signatures), self.bands, self.rows)
        return (used * self._mix).sum(axis=2, dtype=np.uint64)  # wraps mod 2**64: a hash of each band

    def _match(self, signature: np.ndarray, keys: list[int]) -> Near | None:
        candidates: set[int] = set()
        for table, key in zip(self._tables, keys, strict=True):
            held = table.get(key)
            if isinstance(held, list):
                candidates.update(held)
            elif held is not None:
                candidates.add(held)
        best: Near | None = None
        for kept in sorted(candidates):
            block, row = divmod(kept, self.BLOCK)
            similarity = float(np.count_nonzero(self._blocks[block][row] == signature)) / self.num_perm
            if similarity >= self.threshold and (best is None or similarity > best.similarity):
                best = Near(self._positions[kept], similarity)
        return best


@dataclass(frozen=True, slots=True)
class NearOriginal:
    """The kept prompt a near-duplicate names: its ``row_id``, ``source_ref`` and the estimated similarity."""

    row_id: str
    source_ref: str
    similarity: float


def mark_near_duplicates(rows: Iterable[PromptRow], found: dict[int, NearOriginal]) -> list[PromptRow]:
    """Return ``rows`` with each ok row at a position of ``found`` failed ``near_duplicate``, naming the kept prompt
    (``duplicate_of`` its row id); other rows unchanged."""
    out = []
    for index, row in enumerate(rows):
        near = found.get(index)
        if row.ok and near is not None and near.row_id != row.row_id:
            reason = f"{NEAR_DUPLICATE}: {near.similarity:.0%} alike {near.source_ref} (MinHash estimate)"
            row = replace(row, duplicate_of=near.row_id, **status.failure(status.STAGE_PROMPTS, reason))
        out.append(row)
    return out
