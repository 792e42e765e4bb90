"""Near-duplicates found across the whole source while reading one batch: the stored index, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pref_assets.core.decontam import BenchmarkIndex, first_contamination
from pref_assets.core.dedupe import words
from pref_assets.core.prompts import RawRow
from pref_assets.settings import DedupeSettings, SourceSettings
from pref_assets.sources import neardup
from pref_assets.sources.batches import read_source_batch

TEXT = "Explain how a refrigerator moves heat from its cold inside to the warmer kitchen around it step by step"


def _write(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _texts(n: int) -> list[str]:
    return [f"Prompt {i}: tell me about subject {i * 7919 % 1000} and its link to {i * 31 % 97}" for i in range(n)]


def test_a_near_duplicate_in_batch_190_of_a_prompt_in_batch_3_is_found_reading_batch_190(tmp_path: Path) -> None:
    texts = _texts(2000)
    texts[30] = TEXT
    texts[1905] = TEXT.replace("step by step", "step by step, please")
    path = _write(tmp_path / "p.jsonl", texts)
    source = SourceSettings(kind="files", paths=[str(path)])
    read = read_source_batch(source, "batch-00190", 10, tmp_path / "store", DedupeSettings())
    assert list(read.near) == [5]
    kept = read.near[5]
    assert kept.source_ref == f"{path}:31" and kept.row_id == "batch-00003#0" and kept.similarity >= 0.85
    early = read_source_batch(source, "batch-00003", 10, tmp_path / "store", DedupeSettings())
    assert early.near == {}, "the first occurrence is kept"


def test_the_index_is_built_once_per_source_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "p.jsonl", [TEXT, "Something else entirely.", TEXT + " now"])
    source = SourceSettings(kind="files", paths=[str(path)])
    store = tmp_path / "store"
    calls = []
    real = neardup.find_near
    monkeypatch.setattr(neardup, "find_near", lambda *a: calls.append(1) or real(*a))
    first = [read_source_batch(source, f"batch-{i:05d}", 1, store, DedupeSettings()).near for i in range(3)]
    assert len(calls) == 1 and first[2][0].source_ref == f"{path}:1"
    assert len(list((store / "index").glob("near-*.arrow"))) == 1
    _write(path, ["A new first prompt about birds.", TEXT, TEXT + " now"])
    again = read_source_batch(source, "batch-00002", 1, store, DedupeSettings())
    assert len(calls) == 2 and again.near[0].source_ref == f"{path}:2", "a changed file gets a new index"
    assert len(list((store / "index").glob("near-*.arrow"))) == 1, "the old version is removed"
    stricter = read_source_batch(source, "batch-00002", 1, store, DedupeSettings(near_duplicate_threshold=0.99))
    assert len(calls) == 3 and stricter.near == {}


def test_a_near_duplicate_in_a_second_file_names_the_first_file(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.jsonl", ["Unrelated opening question about tides.", TEXT])
    second = _write(tmp_path / "b.jsonl", ["Another question about volcanoes.", TEXT + " in detail"])
    source = SourceSettings(kind="files", paths=[str(first), str(second)])
    read = read_source_batch(source, "batch-00001", 2, tmp_path / "store", DedupeSettings())
    assert read.near[1].source_ref == f"{first}:2" and read.near[1].row_id == "batch-00000#1"


def test_exact_repeats_are_left_to_the_duplicate_check_and_off_means_off(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [TEXT, TEXT, TEXT + " indeed"])
    source = SourceSettings(kind="files", paths=[str(path)])
    read = read_source_batch(source, "batch-00000", 3, tmp_path / "store", DedupeSettings())
    assert set(read.near) == {2} and read.near[2].row_id == "batch-00000#0"
    off = read_source_batch(source, "batch-00000", 3, tmp_path / "store", DedupeSettings(near_duplicates=False))
    assert off.near == {}


def test_the_embedded_set_is_checked_in_memory_with_the_same_rule(tmp_path: Path) -> None:
    source = SourceSettings(kind="embedded")
    reads = [read_source_batch(source, f"batch-{i:05d}", 40, tmp_path, DedupeSettings()) for i in range(4)]
    assert all(r.near == {} for r in reads), "the shipped prompts hold no near-duplicates"
    loose = read_source_batch(source, "batch-00003", 40, tmp_path, DedupeSettings(near_duplicate_threshold=0.05))
    assert loose.near
    for i, kept in loose.near.items():
        batch, position = kept.row_id.removeprefix("batch-").split("#")
        assert int(batch) * 40 + int(position) < 120 + i, "a kept prompt comes before its near-duplicate"


def test_a_hub_split_gets_its_stored_index_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pref_assets.sources import hub

    dataset = datasets.Dataset.from_dict({"instruction": [TEXT, "Where do swallows spend the winter?", "Hello there",
                                                          TEXT + " please", "Unrelated question on knots"]})
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub, "_load", lambda source, offline, config=None: dataset)
    source = SourceSettings(kind="hub", repo_id="org/prompts")
    read = read_source_batch(source, "batch-00001", 3, tmp_path, DedupeSettings())
    assert list(read.near) == [0]
    assert read.near[0].source_ref == "hub:org/prompts[train]:row 1" and read.near[0].row_id == "batch-00000#0"
    assert len(list((tmp_path / "index").glob("near-hub-*.arrow"))) == 1


BENCH_ROW = "Janet has three apples and buys five more at the market on Sunday; how many does she have now?"
# A prompt holding an 8-word run of BENCH_ROW ("janet has three apples and buys five more"), and the same prompt with
# one word of that run changed: nearly alike, but the second shares no run with the benchmark.
CONTAMINATED = ("Before the lesson starts, read this word problem aloud to the class and ask the children to draw it: "
                "Janet has three apples and buys five more, then explain in your own words which operation they "
                "should use, why it fits, and how they could check the answer with counters on the desk")  # fmt: skip
CLEAN = CONTAMINATED.replace("buys five", "picks five")


def _bench(texts: list[str]) -> BenchmarkIndex:
    index = BenchmarkIndex("toy-bench", 8)
    for i, text in enumerate(texts):
        index.add(words(text), f"bench.jsonl:{i + 1}")
    return index


def test_a_contaminated_prompt_is_never_the_kept_one_a_near_duplicate_names(tmp_path: Path) -> None:
    bench = _bench([BENCH_ROW])
    assert first_contamination(words(CONTAMINATED), [bench]) is not None
    assert first_contamination(words(CLEAN), [bench]) is None
    path = _write(tmp_path / "p.jsonl", ["Where do swallows spend the winter?", CONTAMINATED, CLEAN, CLEAN + " Thanks"])
    source = SourceSettings(kind="files", paths=[str(path)])
    unchecked = read_source_batch(source, "batch-00000", 4, tmp_path / "store", DedupeSettings())
    assert unchecked.near[2].source_ref == f"{path}:2", "without benchmarks the two prompts are near-duplicates"
    read = read_source_batch(source, "batch-00000", 4, tmp_path / "store", DedupeSettings(), [bench])
    assert set(read.near) == {3} and read.near[3].source_ref == f"{path}:3", "the clean prompt is the kept one"
    in_memory, _ = neardup.near_in_memory([RawRow(f"r{i}", {"instruction": t}) for i, t in enumerate(
        ["Where do swallows spend the winter?", CONTAMINATED, CLEAN, CLEAN + " Thanks"])], {}, 10_000,
        DedupeSettings(), [bench])  # fmt: skip
    assert in_memory == [None, None, None, 2]


def test_the_stored_index_is_keyed_by_the_benchmarks_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "p.jsonl", [CONTAMINATED, CLEAN])
    source = SourceSettings(kind="files", paths=[str(path)])
    store = tmp_path / "store"
    calls = []
    real = neardup.find_near
    monkeypatch.setattr(neardup, "find_near", lambda *a: calls.append(1) or real(*a))
    clean = read_source_batch(source, "batch-00000", 2, store, DedupeSettings(), [_bench(["Name a desert."])])
    assert len(calls) == 1 and clean.near[1].source_ref == f"{path}:1"
    again = read_source_batch(source, "batch-00000", 2, store, DedupeSettings(), [_bench(["Name a desert."])])
    assert len(calls) == 1 and again.near == clean.near, "an equal benchmark reuses the stored index"
    changed = read_source_batch(source, "batch-00000", 2, store, DedupeSettings(), [_bench([BENCH_ROW])])
    assert len(calls) == 2 and changed.near == {}, "a changed benchmark rebuilds it"


def test_a_hub_split_keeps_no_contaminated_prompt_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pref_assets.sources import hub

    dataset = datasets.Dataset.from_dict({"instruction": [CONTAMINATED, "Hello there", CLEAN]})
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub, "_load", lambda source, offline, config=None: dataset)
    source = SourceSettings(kind="hub", repo_id="org/prompts")
    unchecked = read_source_batch(source, "batch-00000", 3, tmp_path, DedupeSettings())
    assert unchecked.near[2].source_ref == "hub:org/prompts[train]:row 1"
    assert read_source_batch(source, "batch-00000", 3, tmp_path, DedupeSettings(), [_bench([BENCH_ROW])]).near == {}


def test_the_index_reads_a_row_s_words_as_the_prompts_step_does(tmp_path: Path) -> None:
    # A conversation that opens with its own system turn is sent without the system_prompt column's text, so that
    # text is not part of the prompt's words: two rows differing only there (and in one word) are near-duplicates.
    turns = [{"role": "system", "content": "You are a patient tutor."}, {"role": "user", "content": TEXT}]
    other = [turns[0], {"role": "user", "content": TEXT + " now"}]
    rows = [{"messages": turns, "system_prompt": "Answer in French, citing three sources for every claim you make."},
            {"messages": other, "system_prompt": "Reply with a short poem about the sea, in rhyming couplets only."}]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    source = SourceSettings(kind="files", paths=[str(path)])
    read = read_source_batch(source, "batch-00000", 2, tmp_path / "store", DedupeSettings())
    assert set(read.near) == {1} and read.near[1].source_ref == f"{path}:1"
    in_memory, _ = neardup.near_in_memory([RawRow(f"r{i}", r) for i, r in enumerate(rows)], {}, 10_000,
                                          DedupeSettings())  # fmt: skip
    assert in_memory == [None, 0]
