"""The dataset card states what the published data went through: candidates and principles, the judges and their
calibration, the prompts the checks removed, and (once reviewers answer) the judge's agreement with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from pref_assets.core.calibration import PANEL
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs import card_sections
from pref_assets.defs.calibration import read_calibration
from pref_assets.settings import load_settings
from pref_assets.testing.fake_openai import run_fake_openai

BENCH = "Name the largest desert on Earth and say which continent it lies on."


def _config(tmp_path: Path, url: str) -> Path:
    questions = [f"Write a short note about topic {i} for a newsletter." for i in range(7)]
    questions[3] = BENCH.upper()  # the same words as the benchmark prompt
    questions[5] = questions[1] + " Please."  # a near-duplicate of row 1
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"q": q}) + "\n" for q in questions))
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": BENCH}) + "\n")
    config = {
        "storage_dir": str(tmp_path / "store"),
        "batch_size": 10,
        "source": {"kind": "files", "paths": [str(prompts)], "columns": {"instruction": "q"}},
        "decontaminate": [{"name": "deserts", "paths": [str(bench)], "columns": ["problem"]}],
        "dedupe": {"near_duplicate_threshold": 0.7},
        "endpoints": [{"name": "f", "base_url": url, "structured_output": "json_schema"}],
        "generators": [{"name": "gen-a", "endpoint": "f", "model": "org/a", "num_generations": 2},
                       {"name": "gen-b", "endpoint": "f", "model": "org/b"}],
        "principles": ["honesty", "truthfulness"],
        "judges": [{"name": "judge-one", "endpoint": "f", "model": "org/j1"},
                   {"name": "judge-two", "endpoint": "f", "model": "org/j2"}],
        "calibration": {"min_accuracy": 0.0},
    }  # fmt: skip
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_card_carries_candidates_judges_calibration_and_prompt_checks(tmp_path: Path) -> None:
    with run_fake_openai(seed=3) as server:
        settings = load_settings(_config(tmp_path, server.base_url))
        defs = build_definitions(settings)
        instance = dg.DagsterInstance.ephemeral()
        assert dg.materialize([defs.get_assets_def("judge_calibration")], instance=instance,
                              resources=defs.resources).success  # fmt: skip
        assert defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key="batch-00000", instance=instance).success

    store = Path(settings.storage_dir)
    reasons = pl.read_parquet(store / "prompts" / "batch-00000.parquet")["reason"].to_list()
    assert sum(r.startswith("contaminated") for r in reasons if r) == 1
    assert sum(r.startswith("near_duplicate") for r in reasons if r) == 1
    card = (store / "published" / "README.md").read_text()
    assert "3 candidate answers per prompt" in card
    assert "- `gen-a` (`org/a`): 2 per prompt" in card and "`honesty`, `truthfulness`" in card
    assert "- `judge-one` (`org/j1`)" in card and "- `judge-two` (`org/j2`)" in card
    panel = read_calibration(store)
    assert panel is not None
    accuracy = panel[PANEL]["accuracy"]
    assert f"- panel: accuracy {accuracy:.1%}" in card
    assert "smoke test" not in card  # fake judges, not the embedded model
    assert "Of 7 prompts read:" in card
    assert re.search(r"near-duplicates \(.*>= 0\.7\): 1", card)
    assert "- sharing text with benchmark `deserts`: 1" in card
    assert "Judge and reviewers" not in card  # nobody reviewed


def test_sections_say_when_nothing_was_measured(tmp_path: Path) -> None:
    with run_fake_openai(seed=3) as server:
        settings = load_settings(_config(tmp_path, server.base_url))
    empty = pl.DataFrame()
    judges = card_sections.judges_section(settings, tmp_path, empty)["Judges"]
    assert "`judge_calibration` has not been run" in judges
    assert "Of 0 prompts read:" in card_sections.prompt_checks_section(settings, tmp_path, empty)["Prompt checks"]
    assert card_sections.agreement_section(settings, tmp_path, empty) == {}


def test_agreement_with_reviewers_is_counted_over_every_batch(tmp_path: Path) -> None:
    from pref_assets.core.rows import FeedbackRow, RatingRow
    from pref_assets.defs import schemas

    judge = {"b0#0": [4.0, 2.0, 3.0], "b1#0": [1.0, 5.0]}  # the judge's score per answer slot
    human = {"b0#0": [5.0, 1.0, 2.0], "b1#0": [4.0, 2.0]}  # reviewers: b0 in the same order, b1 reversed
    for batch, key in (("b0", "b0#0"), ("b1", "b1#0")):
        for asset, row in (("ratings", RatingRow(row_id=key, prompt_id=key, scores=judge[key])),
                           ("human_feedback", FeedbackRow(row_id=key, prompt_id=key, human_ratings=human[key]))):
            (tmp_path / asset).mkdir(exist_ok=True)
            schemas.to_frame([row], type(row)).write_parquet(tmp_path / asset / f"{batch}.parquet")  # fmt: skip
    with run_fake_openai(seed=3) as server:
        settings = load_settings(_config(tmp_path, server.base_url))
    text = card_sections.agreement_section(settings, tmp_path, pl.DataFrame())["Judge and reviewers"]
    assert "On 2 prompts reviewers scored, the judge ordered 3 of 4 answer pairs as they did" in text
    assert "pairwise accuracy 75.0%" in text and "its best answer was theirs on 1 of 2 prompts" in text
    assert "mean Kendall's tau-b 0.000 over 2 prompts" in text  # +1 and -1
