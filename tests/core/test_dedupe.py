"""Near-duplicates: normalized words, shingles, MinHash estimates, LSH candidates, and the kept-prompt rule."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pref_assets.core.dedupe import (
    MinHasher,
    NearDuplicateFinder,
    NearOriginal,
    lsh_bands,
    mark_near_duplicates,
    shingle_hashes,
    words,
)
from pref_assets.core.rows import PromptRow, failed

BASE = "Describe the water cycle in simple terms for a ten year old child who likes science and drawing"


def _find(texts: list[str], threshold: float = 0.85, skip: list[bool] | None = None) -> list:
    finder = NearDuplicateFinder(threshold, 128)
    shingles = [shingle_hashes(words(t), 3) for t in texts]
    return finder.add(MinHasher(128).signatures(shingles), skip or [False] * len(texts))


def test_words_drop_case_punctuation_spacing_and_width_forms() -> None:
    assert words("Describe the WATER-cycle,\u200b  please!") == ["describe", "the", "water", "cycle", "please"]
    assert words("ＡＢＣ 12") == ["abc", "12"]


def test_short_texts_are_one_shingle_and_long_ones_overlap() -> None:
    assert len(shingle_hashes(["a", "b"], 3)) == 1
    assert len(shingle_hashes(["a", "b", "c", "d", "e"], 3)) == 3
    assert shingle_hashes([], 3) == []


def test_minhash_estimates_jaccard() -> None:
    rng = random.Random(4)
    vocab = [f"w{i}" for i in range(2000)]
    base = [rng.choice(vocab) for _ in range(300)]
    other = base[:240] + [rng.choice(vocab) for _ in range(60)]
    a, b = set(shingle_hashes(base, 3)), set(shingle_hashes(other, 3))
    exact = len(a & b) / len(a | b)
    signatures = MinHasher(256).signatures([sorted(a), sorted(b)])
    estimate = np.count_nonzero(signatures[0] == signatures[1]) / 256
    assert abs(estimate - exact) < 0.08


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85, 0.95])
def test_bands_catch_pairs_at_the_threshold_and_miss_dissimilar_ones(threshold: float) -> None:
    bands, rows = lsh_bands(threshold, 128)
    assert bands * rows <= 128
    def candidate(similarity: float) -> float:
        return 1 - (1 - similarity**rows) ** bands

    assert candidate(threshold) > 0.6 and candidate(min(1.0, threshold + 0.05)) > 0.85
    assert candidate(threshold - 0.3) < 0.05


def test_a_rephrased_prompt_names_the_earlier_one_and_unrelated_ones_stay() -> None:
    texts = [BASE, "Write a haiku about autumn leaves", BASE.upper() + "!!", BASE + " a lot", "What is 2 + 2?"]
    found = _find(texts)
    assert found[0] is None and found[1] is None and found[4] is None
    assert found[2] is not None and found[2].position == 0 and found[2].similarity == 1.0
    assert found[3] is not None and found[3].position == 0 and 0.85 <= found[3].similarity < 1.0


def test_a_near_duplicate_is_never_named_and_skipped_rows_neither_match_nor_are_kept() -> None:
    texts = [BASE, BASE + " a lot", BASE + " a lot", BASE]
    found = _find(texts, skip=[True, False, False, False])
    assert found[0] is None and found[1] is None, "row 0 is skipped: row 1 is kept"
    assert found[2].position == 1 and found[3].position == 1, "later alike rows name the kept row 1, not each other"


def test_the_threshold_decides() -> None:
    texts = [BASE, BASE.replace("ten year old", "nine year old")]
    assert _find(texts, 0.5)[1] is not None
    assert _find(texts, 0.95)[1] is None


def test_chunks_give_the_same_answer_as_one_pass() -> None:
    rng = random.Random(9)
    vocab = [f"w{i}" for i in range(300)]
    texts = []
    for i in range(400):
        if i and rng.random() < 0.2:
            t = texts[rng.randrange(i)].split()
            t[rng.randrange(len(t))] = rng.choice(vocab)
            texts.append(" ".join(t))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(20, 40))))
    whole = _find(texts)
    finder, hasher = NearDuplicateFinder(0.85, 128), MinHasher(128)
    pieces = []
    for lo in range(0, 400, 37):
        part = texts[lo : lo + 37]
        pieces += finder.add(hasher.signatures([shingle_hashes(words(t), 3) for t in part]), [False] * len(part))
    assert pieces == whole
    assert sum(f is not None for f in whole) > 20
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NearDuplicateFinder, "BLOCK", 3)
        assert _find(texts) == whole, "kept signatures held in many small blocks give the same answer"


def test_marking_fails_ok_rows_only_and_names_the_kept_prompt() -> None:
    rows = [PromptRow(row_id=f"b#{i}", prompt_id=str(i), instruction=f"q{i}", source_ref=f"f:{i}") for i in range(3)]
    rows[2] = failed(rows[2], "prompts", "duplicate: same prompt as f:0")
    near = {1: NearOriginal("a#0", "f.jsonl:7", 0.91), 2: NearOriginal("a#0", "f.jsonl:7", 0.99)}
    out = mark_near_duplicates(rows, near)
    assert out[0] == rows[0]
    assert out[1].status == "failed" and out[1].failed_stage == "prompts" and out[1].duplicate_of == "a#0"
    assert out[1].reason.startswith("near_duplicate: 91% alike f.jsonl:7")
    assert out[2] == rows[2], "an already failed row keeps its reason"
