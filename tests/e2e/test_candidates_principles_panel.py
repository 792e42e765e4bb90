"""The whole pipeline on fake servers with two candidates per generator, two principles and a two-judge panel:
every prompt is accounted for at every stage, and the options are stored with the rows and in the metadata."""

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

PROMPTS = 12
CHAIN = ["prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records"]


def _config(tmp_path: Path, first: str, second: str) -> Path:
    lines = [{"question": f"Question number {i}?"} for i in range(PROMPTS - 1)] + [{"question": "Question number 3?"}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = {
        "storage_dir": str(tmp_path / "store"),
        "batch_size": PROMPTS,
        "source": {"kind": "files", "paths": [str(prompts)], "columns": {"instruction": "question"}},
        "endpoints": [
            {"name": "first", "base_url": first, "structured_output": "json_schema"},
            {"name": "second", "base_url": second, "structured_output": "json_schema"},
        ],
        "generators": [
            {"name": "gen-a", "endpoint": "first", "model": "org/model-a", "num_generations": 2,
             "system_prompt": "You answer in one paragraph.", "params": {"seed": 5, "temperature": 0.8}},
            {"name": "gen-b", "endpoint": "second", "model": "org/model-b", "num_generations": 2},
        ],
        "principles": ["honesty", {"name": "brevity", "text": "Answer in as few words as the question allows."}],
        "judges": [
            {"name": "judge-one", "endpoint": "first", "model": "org/judge-a", "max_answers_per_call": 3,
             "max_reasks": 0},
            {"name": "judge-two", "endpoint": "second", "model": "org/judge-b", "aspects": ["helpfulness", "honesty"]},
        ],
    }  # fmt: skip
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _stage(store: Path, asset: str) -> pl.DataFrame:
    return pl.read_parquet(store / asset / "batch-00000.parquet")


def _metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_candidates_principles_and_panel_account_for_every_prompt(tmp_path: Path) -> None:
    # About half of judge-one's rows meet an unreadable verdict (it is not re-asked); judge-two reads every one.
    with run_fake_openai(seed=1, malformed=0.3) as first, run_fake_openai(seed=2) as second:
        settings = load_settings(_config(tmp_path, first.base_url, second.base_url))
        instance = dg.DagsterInstance.ephemeral()
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        assert job.execute_in_process(partition_key="batch-00000", instance=instance).success
        sent = first.stats()["requests"] + second.stats()["requests"]
        assert job.execute_in_process(partition_key="batch-00000", instance=instance).success
        resent = first.stats()["requests"] + second.stats()["requests"] - sent
    assert resent == 0, "a rerun draws the same principles and seeds: every request comes from the cache"

    store = Path(settings.storage_dir)
    prompts = _stage(store, "prompts")
    row_ids = sorted(prompts["row_id"])
    duplicate = prompts.filter(pl.col("status") != "ok")
    assert duplicate.height == 1 and duplicate["reason"][0].startswith("duplicate")
    for asset in CHAIN[2:]:
        frame = _stage(store, asset)
        assert sorted(frame["row_id"]) == row_ids, asset
        carried = frame.filter(pl.col("row_id") == duplicate["row_id"][0])
        assert carried["status"][0] == "failed" and carried["reason"][0].startswith("duplicate"), asset

    generations = _stage(store, "generations_by_model").filter(pl.col("model").is_not_null())
    assert generations.height == 4 * (PROMPTS - 1), "two candidates from each of two generators per unique prompt"
    assert generations["candidate_id"].n_unique() == generations.height
    assert set(generations["candidate"]) == {0, 1}
    assert set(generations["principle"]) == {"honesty", "brevity"}
    assert generations.group_by("row_id").agg(pl.col("generation").n_unique())["generation"].min() > 1

    grouped = _stage(store, "grouped").filter(pl.col("status") == "ok")
    for row in grouped.to_dicts():
        assert row["generation_models"] == ["gen-a", "gen-a", "gen-b", "gen-b"]
        assert row["candidate_ids"] == [f"{row['row_id']}/{m}/{k}" for m in ("gen-a", "gen-b") for k in (0, 1)]
        assert all(p in {"honesty", "brevity"} for p in row["generation_principles"])

    ratings = _stage(store, "ratings")
    rated = ratings.filter(pl.col("status") == "ok").to_dicts()
    assert rated, "most prompts are rated"
    for row in rated:
        judged_by = {j["judge"] for j in row["judgements"] if j["failure"] is None}
        assert set(row["judges"]) == judged_by - {n.split(":")[0] for n in row["judge_failures"]}
        parts = [j for j in row["judgements"] if j["judge"] == "judge-one"]
        assert {j["part"] for j in parts} == {0, 1}, "judge-one shows at most 3 of the 4 answers per call"
        for slot, score in enumerate(row["scores"]):
            own = [s[slot] for s in row["judge_scores"] if s[slot] is not None]
            assert score == sum(own) / len(own)
    failed_judge = [r for r in ratings.to_dicts() if r["judge_failures"]]
    assert failed_judge, "the first server answers some judge calls with malformed text"
    for row in failed_judge:
        assert all(f.startswith("judge-one: judge_unparseable") for f in row["judge_failures"])
        assert row["status"] == "ok" and row["judges"] == ["judge-two"], "rated by the judge that remains"

    pairs = _stage(store, "dpo_pairs").filter(pl.col("status") == "ok").to_dicts()
    assert pairs
    for pair in pairs:
        assert pair["chosen_candidate_id"] != pair["rejected_candidate_id"]
        assert {pair["chosen_principle"], pair["rejected_principle"]} <= {"honesty", "brevity"}
        assert set(pair["agreeing_judges"]) <= {"judge-one", "judge-two"}
        assert "You answer in one paragraph." not in str(pair["chosen"]), "the system prompt is not in the pair"

    shown = _metadata(instance, "generations_by_model")
    assert shown["num_generations"] == {"gen-a": 2, "gen-b": 2} and shown["candidates_per_prompt"] == 4
    assert shown["principles"] == ["honesty", "brevity"]
    assert sum(shown["answers_by_principle"].values()) == generations.height
    panel = _metadata(instance, "ratings")
    assert panel["panel"] == ["judge-one", "judge-two"] and panel["min_judges"] == 1
    alpha = panel["inter_judge_alpha"]
    assert isinstance(alpha, float) and -1.0 <= alpha <= 1.0, "two judges rating the same answers give an alpha"
    assert panel["inter_judge_rank_agreement"]["judge-one ~ judge-two"]["answer_pairs"] > 0
    assert panel["judge_failures_by_judge"]["judge-one"] == len(failed_judge)
    assert panel["parts_anchor_comparisons"] > 0
    assert [j["max_answers_per_call"] for j in panel["judge_options"]] == [3, 8]
    backed = _metadata(instance, "dpo_pairs")
    assert sum(backed["pairs_by_agreeing_judges"].values()) == len(pairs)
    assert sum(backed["chosen_by_principle"].values()) == len(pairs)
