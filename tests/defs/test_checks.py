"""The blocking ledger checks stop a batch whose failure rate is too high, with a message to act on."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai


def _settings(base_url: str, store: Path, max_failure_rate: float) -> Settings:
    return Settings(
        storage_dir=str(store), batch_size=12, source=SourceSettings(limit=12), max_failure_rate=max_failure_rate,
        endpoints=[EndpointSettings(name="f", base_url=base_url, max_attempts=1, structured_output="json_schema")],
        generators=[ModelSettings(name=n, endpoint="f", model=n) for n in ("a", "b")],
        judge=JudgeSettings(name="j", endpoint="f", model="j"),
        cache={"enabled": False},
    )  # fmt: skip


def _checks(result: dg.ExecuteInProcessResult, name: str = "ledger") -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name == name}


def test_failing_endpoint_is_stopped_by_the_blocking_check(tmp_path: Path) -> None:
    with run_fake_openai(fail_5xx=0.8, seed=1) as server:
        job = build_definitions(_settings(server.base_url, tmp_path, 0.3)).resolve_job_def(JOB_NAME)
        result = job.execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral(),
                                        raise_on_error=False)  # fmt: skip
    assert not result.success
    check = _checks(result)["generations_by_model"]
    assert not check.passed
    assert "of generations_by_model rows failed (limit 30%): http_error" in check.description
    assert "re-materialize" in check.description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "grouped" not in materialized and "dpo_pairs" not in materialized


def test_healthy_batch_passes_every_ledger_check(tmp_path: Path) -> None:
    with run_fake_openai(seed=1) as server:
        job = build_definitions(_settings(server.base_url, tmp_path, 0.3)).resolve_job_def(JOB_NAME)
        result = job.execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral())
    assert set(_checks(result)) == {"generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records",
                                   "preference_pairs"}  # preference_job runs review and publish too
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert {("prompts", "no_duplicate_prompts"), ("generations_by_model", "empty_answers"),
            ("ratings", "judge_parse_failures"), ("dpo_pairs", "tie_rate")} <= set(evaluations)  # fmt: skip
    assert all(e.passed for e in evaluations.values())


def test_unparseable_judge_answers_raise_a_warning_not_a_stop(tmp_path: Path) -> None:
    with run_fake_openai(seed=1, malformed=0.8) as server:
        settings = _settings(server.base_url, tmp_path, 1.0).model_copy(update={"judge": JudgeSettings(
            name="j", endpoint="f", model="j", max_reasks=0)})  # fmt: skip
        result = (
            build_definitions(settings)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral())
        )
    warning = _checks(result, "judge_parse_failures")["ratings"]
    assert result.success and not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert "over the limit of 10%" in warning.description


def test_a_stage_run_on_its_own_still_answers_for_every_prompt(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(seed=1) as server:
        defs = build_definitions(_settings(server.base_url, tmp_path, 0.3))
        defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key="batch-00000", instance=instance)
    ratings = tmp_path / "ratings" / "batch-00000.parquet"
    pl.read_parquet(ratings).slice(1).write_parquet(ratings)  # a prompt lost upstream of dpo_pairs
    only_pairs = defs.resolve_implicit_global_asset_job_def()
    result = only_pairs.execute_in_process(
        partition_key="batch-00000",
        instance=instance,
        asset_selection=[dg.AssetKey("dpo_pairs")],
        raise_on_error=False,
    )
    check = _checks(result)["dpo_pairs"]
    assert not check.passed and check.description.startswith("dpo_pairs lost rows: 1 prompts missing")
