"""Benchmark prompts for decontamination: files in every format, columns, chat cells, bounds and errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pref_assets.core import limits
from pref_assets.core.decontam import find_contamination
from pref_assets.core.dedupe import words
from pref_assets.core.limits import MAX_BENCHMARK_ROWS
from pref_assets.core.prompts import PromptSourceError
from pref_assets.settings import BenchmarkSettings
from pref_assets.sources.benchmarks import benchmark_index, build_benchmark_index

QUESTION = "A train leaves the station at noon travelling at sixty miles per hour towards the coast"


def test_jsonl_and_csv_benchmarks_with_several_columns(tmp_path: Path) -> None:
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(json.dumps({"question": "short one", "context": QUESTION}) + "\n")
    csv = tmp_path / "more.csv"
    pl.DataFrame({"question": ["What is the boiling point of water at the top of Everest today"]}).write_csv(csv)
    spec = BenchmarkSettings(name="mix", paths=[str(jsonl), str(csv)], columns=["question", "context"])
    index = build_benchmark_index(spec)
    assert index.rows == 2
    found = find_contamination(words("Ignore this: a train leaves the station at noon travelling at sixty mph"), index)
    assert found is not None and found.row == 1 and found.ref == f"{jsonl}:1"
    other = find_contamination(words("what is the boiling point of water at the top of everest"), index)
    assert other is not None and other.row == 2 and other.ref == f"{csv}:line 2"


def test_chat_cells_are_read_and_limit_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Question {i}: " + QUESTION}]} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = BenchmarkSettings(name="chat", paths=[str(path)], columns=["messages"], limit=2)
    assert build_benchmark_index(spec).rows == 2
    assert find_contamination(words(QUESTION), build_benchmark_index(spec)) is not None


def test_a_benchmark_without_the_columns_or_unreadable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"text": QUESTION}) + "\n")
    with pytest.raises(PromptSourceError, match=r"benchmark .b.: .*none of the columns"):
        build_benchmark_index(BenchmarkSettings(name="b", paths=[str(path)]))
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(PromptSourceError, match=r"deep.jsonl:1: JSON nested deeper"):
        build_benchmark_index(BenchmarkSettings(name="deep", paths=[str(deep)]))
    with pytest.raises(PromptSourceError, match="no such file"):
        build_benchmark_index(BenchmarkSettings(name="gone", paths=[str(tmp_path / "gone.jsonl")]))


def test_an_index_is_reused_until_its_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"prompt": QUESTION}) + "\n")
    spec = BenchmarkSettings(name="b", paths=[str(path)])
    first = benchmark_index(spec)
    assert benchmark_index(spec) is first
    path.write_text(json.dumps({"prompt": QUESTION}) + "\n" + json.dumps({"prompt": "another row"}) + "\n")
    assert benchmark_index(spec).rows == 2


def test_settings_need_paths_or_a_repo() -> None:
    with pytest.raises(ValueError, match="needs paths"):
        BenchmarkSettings(name="x")
    with pytest.raises(ValueError, match="needs repo_id"):
        BenchmarkSettings(name="x", kind="hub")


def test_a_hub_benchmark_reads_its_configuration_and_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pref_assets.sources import hub

    asked = []
    dataset = datasets.Dataset.from_dict({"question": ["Other question entirely", QUESTION], "answer": ["1", "2"]})
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub, "_load", lambda source, offline, config=None: asked.append((source, config)) or dataset)
    spec = BenchmarkSettings(name="gsm", kind="hub", repo_id="org/gsm", config="main", columns=["question"])
    index = build_benchmark_index(spec)
    [(source, config)] = asked
    assert (source.repo_id, source.split, config) == ("org/gsm", "test", "main")
    found = find_contamination(words(QUESTION), index)
    assert found is not None and found.ref == "hub:org/gsm[test]:row 2"


def test_a_hub_benchmark_over_the_row_cap_is_refused_by_name_unless_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from pref_assets.sources import hub

    rows = MAX_BENCHMARK_ROWS + 1
    dataset = datasets.Dataset.from_dict({"question": [QUESTION] + ["short"] * (rows - 1)})
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub, "_load", lambda source, offline, config=None: dataset)
    spec = BenchmarkSettings(name="huge", kind="hub", repo_id="org/huge", columns=["question"])
    with pytest.raises(PromptSourceError, match=rf"benchmark 'huge': {rows} rows up to hub:org/huge\[test\], over "
                                                rf"the limit of {MAX_BENCHMARK_ROWS} .*set its limit:"):  # fmt: skip
        build_benchmark_index(spec)
    limited = build_benchmark_index(spec.model_copy(update={"limit": 2}))
    assert limited.rows == 2 and find_contamination(words(QUESTION), limited) is not None


def test_benchmark_files_over_the_row_cap_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BENCHMARK_ROWS", 3)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (first, second):
        path.write_text("".join(json.dumps({"prompt": f"{QUESTION} {i}"}) + "\n" for i in range(2)))
    spec = BenchmarkSettings(name="two-files", paths=[str(first), str(second)])
    with pytest.raises(PromptSourceError, match=rf"benchmark 'two-files': 4 rows up to {second}, over the limit of 3"):
        build_benchmark_index(spec)
    assert build_benchmark_index(spec.model_copy(update={"paths": [str(first)]})).rows == 2
    assert build_benchmark_index(spec.model_copy(update={"limit": 4})).rows == 4
