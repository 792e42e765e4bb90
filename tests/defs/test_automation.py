"""Downstream assets follow a partition materialized on its own, but never past a failed blocking check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pref_assets.definitions import build_definitions
from pref_assets.defs.sensors import AUTOMATION_SENSOR_NAME
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai


def _settings(base_url: str, store: Path) -> Settings:
    return Settings(
        storage_dir=str(store), batch_size=6, source=SourceSettings(limit=12), max_failure_rate=0.3,
        endpoints=[EndpointSettings(name="f", base_url=base_url, max_attempts=1, structured_output="json_schema")],
        generators=[ModelSettings(name=n, endpoint="f", model=n) for n in ("a", "b")],
        judge=JudgeSettings(name="j", endpoint="f", model="j"), cache={"enabled": False},
    )  # fmt: skip


def _requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, set[str]]:
    return {
        r.key.to_user_string(): set(r.true_subset.expensively_compute_partition_keys())
        for r in result.results
        if r.true_subset.size
    }


def _materialize_first_two(settings: Settings, partition: str, instance: dg.DagsterInstance) -> None:
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey("prompts"), dg.AssetKey("generations_by_model")]
    job.execute_in_process(partition_key=partition, instance=instance, asset_selection=selection, raise_on_error=False)


def test_a_new_partition_pulls_its_downstream_unless_a_blocking_check_failed(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance, run_fake_openai(seed=1) as good, run_fake_openai(fail_5xx=0.9) as bad:
        defs = build_definitions(_settings(good.base_url, tmp_path))
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing happened yet: nothing to follow

        _materialize_first_two(_settings(bad.base_url, tmp_path), "batch-00000", instance)  # its ledger check fails
        _materialize_first_two(_settings(good.base_url, tmp_path), "batch-00001", instance)
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        # One request for the rest of batch-00001's chain (the run stops at a blocking check if one fails)
        downstream = ("grouped", "ratings", "dpo_pairs", "argilla_records")
        assert _requested(second) == {asset: {"batch-00001"} for asset in downstream}

        third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.total_requested == 0  # requested once, not again on every tick


def test_the_automation_sensor_is_off_until_turned_on() -> None:
    sensor = build_definitions(Settings()).get_repository_def().get_sensor_def(AUTOMATION_SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
