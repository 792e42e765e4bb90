"""Decontamination: shared word runs, exact matches, the overlap ratio, the reason and the counts."""

from __future__ import annotations

import os
import subprocess
import sys

from pref_assets.core.decontam import BenchmarkIndex, clean_prompt_counts, find_contamination, mark_contaminated
from pref_assets.core.dedupe import NearOriginal, mark_near_duplicates, words
from pref_assets.core.prompts import RawRow, normalize_rows
from pref_assets.core.rows import PromptRow

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


def _index(name: str, texts: list[str], n: int = 8, min_overlap: float = 0.0) -> BenchmarkIndex:
    index = BenchmarkIndex(name, n, min_overlap)
    for i, text in enumerate(texts):
        index.add(words(text), f"{name}.jsonl:{i + 1}")
    return index


def _row(i: int, text: str) -> PromptRow:
    return PromptRow(row_id=f"b#{i}", prompt_id=str(i), instruction=text, source_ref=f"p:{i}")


def test_a_shared_run_of_eight_words_contaminates_whatever_the_case_and_punctuation() -> None:
    index = _index("gsm8k", ["Unrelated first row about trains leaving stations at noon.", QUESTION])
    prompt = "Please help: NATALIA sold clips to 48 of her friends -- in April; how many?"
    found = find_contamination(words(prompt), index)
    assert found is not None and found.benchmark == "gsm8k" and found.row == 2 and found.ref == "gsm8k.jsonl:2"
    assert found.reason().startswith("contaminated: gsm8k row 2 (gsm8k.jsonl:2): shares runs of 8 words")


def test_seven_shared_words_do_not_and_the_run_length_is_configurable() -> None:
    prompt = "Natalia sold clips to 48 of her cousins yesterday"
    assert find_contamination(words(prompt), _index("g", [QUESTION])) is None
    assert find_contamination(words(prompt), _index("g", [QUESTION], n=7)) is not None


def test_a_short_prompt_equal_to_a_benchmark_prompt_is_contaminated() -> None:
    found = find_contamination(words("What is 2+2?"), _index("tiny", ["what is 2 + 2"]))
    assert found is not None and found.overlap == 1.0 and "same words" in found.reason()


def test_min_overlap_lets_a_long_prompt_quoting_one_run_through() -> None:
    long_prompt = QUESTION + " " + " ".join(f"extra{i}" for i in range(60))
    assert find_contamination(words(long_prompt), _index("g", [QUESTION])) is not None
    assert find_contamination(words(long_prompt), _index("g", [QUESTION], min_overlap=0.5)) is None
    assert find_contamination(words(QUESTION + " extra"), _index("g", [QUESTION], min_overlap=0.5)) is not None


def test_marking_counts_per_benchmark_and_the_first_benchmark_wins() -> None:
    first, second = _index("first", [QUESTION]), _index("second", [QUESTION, "Translate the word house into French"])
    rows = [_row(0, QUESTION), _row(1, "translate the word house into french"), _row(2, "A fresh prompt.")]
    out, counts = mark_contaminated(rows, [first, second])
    assert counts == {"first": 1, "second": 1}
    assert out[0].reason.startswith("contaminated: first row 1") and out[0].failed_stage == "prompts"
    assert out[1].reason.startswith("contaminated: second row 2")
    assert out[2].ok
    assert mark_contaminated(rows, []) == (rows, {})


def test_counts_for_the_card_are_read_back_from_the_reasons() -> None:
    raw = [RawRow(f"f:{i}", {"instruction": t}) for i, t in enumerate(["a b", "A  B", QUESTION, "fresh", "x y z"])]
    rows = normalize_rows(raw, {}, max_chars=999, row_key=lambda i: f"b#{i}")
    rows, _ = mark_contaminated(rows, [_index("gsm8k-test", [QUESTION])])
    rows = mark_near_duplicates(rows, {4: NearOriginal("b#3", "f:3", 0.9)})
    counts = clean_prompt_counts(rows)
    assert counts == {"near_duplicates": 1, "duplicates": 1, "contaminated": {"gsm8k-test": 1}}


def test_the_version_follows_the_words_and_the_settings_not_the_process() -> None:
    version = _index("gsm8k", [QUESTION, "Name the largest desert."]).version
    assert _index("other-name", ["natalia SOLD clips to 48 of her friends in April and then she sold half as many "
                                 "clips in May", "name the largest desert"]).version == version  # fmt: skip
    script = ("from pref_assets.core.decontam import BenchmarkIndex; from pref_assets.core.dedupe import words; "
              f"i = BenchmarkIndex('b', 8); i.add(words({QUESTION!r}), 'x'); i.add(words('Name the largest desert.'), "
              "'y'); print(i.version)")  # fmt: skip
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == version, "the same in every process, whatever its string hashing"
    assert _index("gsm8k", [QUESTION]).version != version
    assert _index("gsm8k", [QUESTION, "Name the largest"]).version != version
    assert _index("gsm8k", ["Name the largest desert.", QUESTION]).version != version
    assert _index("gsm8k", [QUESTION, "Name the largest desert."], n=9).version != version
    assert _index("gsm8k", [QUESTION, "Name the largest desert."], min_overlap=0.5).version != version
