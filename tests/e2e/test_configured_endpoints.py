"""The whole pipeline against two other OpenAI-compatible servers, chosen by configuration alone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import load_settings
from pref_assets.testing.fake_openai import run_fake_openai

SECRET = "sk-sentinel-9f83c1d2"


def _config(tmp_path: Path, first: str, second: str) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"question": "Question number {i}?", "area": "t{i % 3}"}}\n' for i in range(12)))
    config = {
        "storage_dir": str(tmp_path / "store"),
        "batch_size": 12,
        "source": {
            "kind": "files",
            "paths": [str(prompts)],
            "columns": {"instruction": "question", "topic": "area"},
        },
        "endpoints": [
            {
                "name": "first",
                "base_url": first,
                "api_key_env": "FIRST_KEY",
                "max_attempts": 6,
                "structured_output": "json_schema",
            },
            {"name": "second", "base_url": second, "max_concurrency": 4, "timeout_s": 5},
        ],
        "generators": [
            {"name": "gen-a", "endpoint": "first", "model": "org/model-a", "params": {"max_tokens": 64}},
            {"name": "gen-b", "endpoint": "second", "model": "org/model-b", "params": {"temperature": 0.7}},
        ],
        "judge": {
            "name": "judge",
            "endpoint": "first",
            "model": "org/judge-70b",
            "aspects": ["overall-rating"],
        },
    }
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pipeline_runs_on_configured_servers_with_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRST_KEY", SECRET)
    with (
        run_fake_openai(api_key=SECRET, fail_5xx=0.2, malformed=0.3, seed=3) as first,
        run_fake_openai(seed=4) as second,
    ):
        settings = load_settings(_config(tmp_path, first.base_url, second.base_url))
        instance = dg.DagsterInstance.ephemeral()
        result = (
            build_definitions(settings)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key="batch-00000", instance=instance)
        )
        assert result.success
        _assert_secret_nowhere(instance, result.run_id)
        assert first.stats()["by_model"].keys() == {"org/model-a", "org/judge-70b"}
        assert second.stats()["by_model"].keys() == {"org/model-b"}
        assert first.stats()["by_status"].get("500", 0) + first.stats()["by_status"].get("503", 0) > 0

    store = Path(settings.storage_dir)
    prompts = pl.read_parquet(store / "prompts" / "batch-00000.parquet")
    assert prompts.height == 12 and set(prompts["topic"]) == {"t0", "t1", "t2"}
    ratings = pl.read_parquet(store / "ratings" / "batch-00000.parquet")
    assert sorted(ratings["prompt_id"]) == sorted(prompts["prompt_id"])
    for row in ratings.to_dicts():
        if row["status"] == "ok":
            assert all(s is not None for s in row["scores"])
        else:
            assert row["reason"].startswith("judge_unparseable") and row["judgements"][0]["raw_text"]
    pairs = pl.read_parquet(store / "dpo_pairs" / "batch-00000.parquet")
    assert pairs.height == 12
    assert pairs.filter(pl.col("status") == "ok").filter(pl.col("chosen") == pl.col("rejected")).is_empty()
    for path in store.rglob("*.parquet"):
        assert SECRET.encode() not in path.read_bytes()


def test_missing_api_key_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRST_KEY", raising=False)
    settings = load_settings(_config(tmp_path, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"))
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    with pytest.raises(dg.DagsterError, match="FIRST_KEY"):
        job.execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral())


def _assert_secret_nowhere(instance: dg.DagsterInstance, run_id: str) -> None:
    """The key is in no log line, no metadata, no stored run config."""
    run = instance.get_run_by_id(run_id)
    assert SECRET not in repr(run.run_config) and SECRET not in repr(run.tags)
    for record in instance.all_logs(run_id):
        assert SECRET not in repr(record), record.dagster_event_type
