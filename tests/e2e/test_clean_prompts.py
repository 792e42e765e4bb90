"""The whole pipeline on fake servers with clean-prompt checks: a benchmark holding some of the prompts, a
near-duplicate pair across two batches and an exact repeat, next to two candidates per generator, two principles
and a two-judge panel. Every prompt is accounted for at every stage with the right reason, and no prompt that
failed its checks reaches a model; a prompt nearly alike a contaminated one is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import yaml

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import load_settings
from pref_assets.testing.fake_openai import run_fake_openai

BATCHES = ("batch-00000", "batch-00001")
CHAIN = ["prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records", "human_feedback",
         "preference_pairs"]  # fmt: skip
LONG = "Describe how tides are caused by the moon and the sun, and why some coasts see two high tides a day"
# Holds the 8-word run "janet has three apples and buys five more" of the first benchmark prompt, in a prompt long
# enough that changing one word of the run leaves a near-duplicate that shares no run with the benchmark.
CONTAMINATED = (
    "Quick one for the class. Janet has three apples and buys five more; draw the apples, then say in your own words "
    "which operation fits, why it fits, and how to check the answer with counters on the desk"
)
BENCH = [
    "Janet has three apples and buys five more at the market on Sunday; how many apples does she have now?",
    "Translate the following sentence into French: the library opens at nine in the morning.",
    "Name the largest desert on Earth.",
]


def _config(tmp_path: Path, first: str, second: str) -> Path:
    questions = [f"Question number {i}?" for i in range(12)]
    questions[2] = LONG
    questions[4] = CONTAMINATED  # 8-word run
    questions[7] = "name the LARGEST desert on earth!"  # the same words as a short benchmark prompt
    questions[9] = LONG + ", please?"  # near-duplicate of row 2
    questions[11] = "question number 0?"  # an exact repeat (after normalization) of row 0
    questions[10] = CONTAMINATED.replace("buys five", "picks five")  # nearly row 4, but clean: it stays
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": q}) + "\n" for q in BENCH))
    config = {
        "storage_dir": str(tmp_path / "store"),
        "batch_size": 6,
        "source": {"kind": "files", "paths": [str(prompts)], "columns": {"instruction": "question"}},
        "decontaminate": [{"name": "toy-bench", "paths": [str(bench)], "columns": ["problem"]}],
        "dedupe": {"near_duplicate_threshold": 0.8},
        "endpoints": [{"name": "first", "base_url": first, "structured_output": "json_schema"},
                      {"name": "second", "base_url": second, "structured_output": "json_schema"}],
        "generators": [{"name": "gen-a", "endpoint": "first", "model": "org/model-a", "num_generations": 2},
                       {"name": "gen-b", "endpoint": "second", "model": "org/model-b", "num_generations": 2}],
        "principles": ["honesty", "helpfulness"],
        "judges": [{"name": "judge-one", "endpoint": "first", "model": "org/judge-a"},
                   {"name": "judge-two", "endpoint": "second", "model": "org/judge-b"}],
    }  # fmt: skip
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _stage(store: Path, asset: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(store / asset / f"{b}.parquet") for b in BATCHES], how="diagonal_relaxed")


def _metadata(instance: dg.DagsterInstance, asset: str, batch: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
    [record] = [r for r in records if r.partition_key == batch] or [event]
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def test_contaminated_near_duplicate_and_repeated_prompts_are_failed_before_any_call(tmp_path: Path) -> None:
    with run_fake_openai(seed=7) as first, run_fake_openai(seed=8) as second:
        settings = load_settings(_config(tmp_path, first.base_url, second.base_url))
        instance = dg.DagsterInstance.ephemeral()
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        for batch in BATCHES:
            assert job.execute_in_process(partition_key=batch, instance=instance).success

    store = Path(settings.storage_dir)
    prompts = _stage(store, "prompts")
    reasons = dict(zip(prompts["row_id"], prompts["reason"], strict=True))
    prompts_file = Path(settings.source.paths[0])
    assert reasons["batch-00000#4"].startswith(f"contaminated: toy-bench row 1 ({tmp_path / 'bench.jsonl'}:1)")
    assert reasons["batch-00001#1"].startswith("contaminated: toy-bench row 3")
    assert "same words" in reasons["batch-00001#1"]
    assert reasons["batch-00001#3"].startswith("near_duplicate: ")
    assert f"alike {prompts_file}:3 " in reasons["batch-00001#3"]
    assert reasons["batch-00001#5"] == f"duplicate: same prompt as {prompts_file}:1"
    assert reasons["batch-00001#4"] is None, "nearly alike a contaminated prompt, which does not stay: kept"
    failed = {"batch-00000#4", "batch-00001#1", "batch-00001#3", "batch-00001#5"}
    assert {r for r, why in reasons.items() if why is not None} == failed
    duplicate_of = dict(zip(prompts["row_id"], prompts["duplicate_of"], strict=True))
    assert duplicate_of["batch-00001#3"] == "batch-00000#2" and duplicate_of["batch-00001#5"] == "batch-00000#0"

    for asset in CHAIN[1:]:
        frame = _stage(store, asset)
        by_row = frame.group_by("row_id").agg(pl.col("status").first(), pl.col("reason").first())
        assert set(by_row["row_id"]) == set(prompts["row_id"]), asset
        for row in by_row.filter(pl.col("row_id").is_in(list(failed))).to_dicts():
            assert row["status"] == "failed" and row["reason"] == reasons[row["row_id"]], asset
    generations = _stage(store, "generations_by_model").filter(pl.col("model").is_not_null())
    assert set(generations["row_id"]).isdisjoint(failed), "no answer was asked for a failed prompt"
    assert generations.height == 4 * (12 - len(failed))

    first_batch, second_batch = (_metadata(instance, "prompts", b) for b in BATCHES)
    assert first_batch["contaminated_by_benchmark"] == {"toy-bench": 1} and first_batch["near_duplicates"] == 0
    assert second_batch["contaminated_by_benchmark"] == {"toy-bench": 1} and second_batch["near_duplicates"] == 1
    assert second_batch["benchmarks"] == {"toy-bench": {"rows": 3, "ngram_words": 8, "min_overlap": 0.0}}
    assert second_batch["near_duplicate_threshold"] == 0.8
