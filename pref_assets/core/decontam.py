"""Decontamination: training prompts that overlap a benchmark's prompts are failed before any model is called.

Texts are compared as normalized words (``pref_assets.core.dedupe.words``: NFKC, case folded, punctuation and
spacing dropped). A prompt is contaminated by a benchmark when it shares a run of ``ngram_words`` words with one of
the benchmark's prompts and at least ``min_overlap`` of its words lie inside such shared runs (0: any shared run),
or when its words are exactly a benchmark prompt's (which also catches prompts shorter than a run). The reason
names the benchmark, the benchmark row that shares the most runs, and where that row is.

Runs are looked up by Python's hash of the word tuple: an index lives in one process and is never stored. Its
``version`` (a digest of the rows' words and the matching settings) keys what depends on it, such as the stored
near-duplicate index, which keeps no contaminated prompt.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from pref_assets.core import status
from pref_assets.core.dedupe import NEAR_DUPLICATE, prompt_words
from pref_assets.core.prompts import DUPLICATE
from pref_assets.core.rows import PromptRow

CONTAMINATED = "contaminated"
_REASON = re.compile(rf"{CONTAMINATED}: (.*?) row \d+ \(")


@dataclass(slots=True)
class BenchmarkIndex:
    """One benchmark's prompts: every run of ``ngram_words`` words and every whole text, each with the first row
    (1-based) holding it, and each row's ``source_ref``."""

    name: str
    ngram_words: int
    min_overlap: float = 0.0
    runs: dict[int, int] = field(default_factory=dict)
    whole: dict[int, int] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)
    _content: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    def add(self, tokens: Sequence[str], ref: str) -> None:
        """Add the next benchmark row (its words, and where it is); an empty row is counted but matches nothing."""
        self.refs.append(ref)
        self._content.update(("\x1f".join(tokens) + "\x1e").encode("utf-8"))
        row = len(self.refs)
        if not tokens:
            return
        self.whole.setdefault(hash(tuple(tokens)), row)
        n = self.ngram_words
        for i in range(len(tokens) - n + 1):
            self.runs.setdefault(hash(tuple(tokens[i : i + n])), row)

    @property
    def rows(self) -> int:
        """Return how many benchmark rows the index holds."""
        return len(self.refs)

    @property
    def version(self) -> str:
        """Return a digest of what decides which prompts the index finds: its rows' words and its settings."""
        settings = f"{self.ngram_words}|{self.min_overlap}|".encode()
        return hashlib.sha256(settings + self._content.digest()).hexdigest()


@dataclass(frozen=True, slots=True)
class Contamination:
    """Why a prompt is contaminated: the benchmark, its row (1-based) and ``source_ref``, the share of the prompt's
    words inside shared runs (1.0 for an exact match)."""

    benchmark: str
    row: int
    ref: str
    overlap: float
    run_words: int

    def reason(self) -> str:
        """Return the failed row's reason."""
        if self.overlap >= 1.0 and self.run_words == 0:
            how = "same words as the benchmark prompt"
        else:
            how = f"shares runs of {self.run_words} words ({self.overlap:.0%} of the prompt's words)"
        return f"{CONTAMINATED}: {self.benchmark} row {self.row} ({self.ref}): {how}"


def find_contamination(tokens: Sequence[str], index: BenchmarkIndex) -> Contamination | None:
    """Return how the prompt of ``tokens`` overlaps the benchmark of ``index``, or None when it does not enough."""
    if not tokens:
        return None
    exact = index.whole.get(hash(tuple(tokens)))
    if exact is not None:
        return Contamination(index.name, exact, index.refs[exact - 1], 1.0, 0)
    n = index.ngram_words
    rows: Counter[int] = Counter()
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        row = index.runs.get(hash(tuple(tokens[i : i + n])))
        if row is not None:
            rows[row] += 1
            covered[i : i + n] = [True] * n
    if not rows:
        return None
    overlap = sum(covered) / len(tokens)
    if overlap < index.min_overlap:
        return None
    row = min(rows, key=lambda r: (-rows[r], r))
    return Contamination(index.name, row, index.refs[row - 1], overlap, n)


def first_contamination(tokens: Sequence[str], indexes: Sequence[BenchmarkIndex]) -> Contamination | None:
    """Return how the prompt of ``tokens`` overlaps the first benchmark of ``indexes`` it overlaps, or None."""
    return next((c for c in (find_contamination(tokens, i) for i in indexes) if c is not None), None)


def mark_contaminated(
    rows: Iterable[PromptRow], indexes: Sequence[BenchmarkIndex]
) -> tuple[list[PromptRow], dict[str, int]]:
    """Return ``rows`` with each ok row that overlaps a benchmark (the first, in the order given) failed
    ``contaminated``, and the count of such rows per benchmark (every benchmark listed, zero included)."""
    counts = {index.name: 0 for index in indexes}
    out = []
    for row in rows:
        if row.ok and indexes:
            found = first_contamination(prompt_words(row), indexes)
            if found is not None:
                counts[found.benchmark] += 1
                row = replace(row, **status.failure(status.STAGE_PROMPTS, found.reason()))
        out.append(row)
    return out, counts


def clean_prompt_counts(rows: Iterable[PromptRow]) -> dict[str, object]:
    """Return what the prompt checks failed over ``rows`` (any number of batches of ``prompts``): near-duplicates,
    exact repeats, and contaminated prompts per benchmark, read from the rows' reasons (for the dataset card)."""
    near = repeats = 0
    by_benchmark: Counter[str] = Counter()
    for row in rows:
        reason = row.reason or ""
        if reason.startswith(f"{NEAR_DUPLICATE}:"):
            near += 1
        elif reason.startswith(f"{DUPLICATE}:"):
            repeats += 1
        else:
            found = _REASON.match(reason)
            if found:
                by_benchmark[found.group(1)] += 1
    return {"near_duplicates": near, "duplicates": repeats, "contaminated": dict(by_benchmark)}
