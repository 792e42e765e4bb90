"""The named jobs cover what their runs must reach, and every run is tagged with its configuration's identity."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pref_assets.definitions import build_definitions
from pref_assets.defs.jobs import JOB_NAME, PUSH_JOB_NAME, REVIEW_JOB_NAME, config_identity, config_tags
from pref_assets.defs.sensors import SENSOR_NAME
from pref_assets.settings import Settings, SourceSettings

CHAIN = {"prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records", "human_feedback",
         "preference_pairs", "preference_dataset"}  # fmt: skip


def _selected(defs: dg.Definitions, job: str) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}


def test_preference_job_reaches_the_published_set_and_review_job_republishes(tmp_path: Path) -> None:
    defs = build_definitions(Settings(storage_dir=str(tmp_path)))
    assert _selected(defs, JOB_NAME) == CHAIN
    assert _selected(defs, REVIEW_JOB_NAME) == {"human_feedback", "preference_pairs", "preference_dataset"}
    assert _selected(defs, PUSH_JOB_NAME) == {"argilla_records"}


def test_the_watched_folder_s_runs_are_preference_job_runs(tmp_path: Path) -> None:
    source = SourceSettings(kind="folder", folder=str(tmp_path / "incoming"))
    defs = build_definitions(Settings(storage_dir=str(tmp_path / "data"), source=source))
    assert defs.resolve_sensor_def(SENSOR_NAME).job_name == JOB_NAME


def test_the_identity_tells_configurations_apart_and_tags_every_named_job(tmp_path: Path) -> None:
    one = config_identity(Settings(storage_dir=str(tmp_path / "a")), "/x/a.yaml")
    assert one == config_identity(Settings(storage_dir=str(tmp_path / "a")), "/x/a.yaml")
    other_storage = config_identity(Settings(storage_dir=str(tmp_path / "b")))
    other_source = config_identity(Settings(storage_dir=str(tmp_path / "a"), source=SourceSettings(limit=16)))
    assert len({one["config"], other_storage["config"]}) == 2
    assert one["source"] == "embedded: the shipped prompt set" and one["config_file"] == "/x/a.yaml"
    assert other_storage["config_file"] == "the embedded default"
    assert other_source["config"] == one["config"]  # the same prompts, models and storage: the same data
    defs = build_definitions(Settings(storage_dir=str(tmp_path / "a")))
    for job in (JOB_NAME, REVIEW_JOB_NAME, PUSH_JOB_NAME):
        tags = defs.resolve_job_def(job).tags
        assert tags["pref_assets/config"] == one["config"] and tags["pref_assets/storage"] == str(tmp_path / "a")
    assert all(len(v) <= 200 for v in config_tags({"long": "x" * 500}).values())


def test_final_pairs_rebuilt_on_their_own_are_republished_by_automation(tmp_path: Path) -> None:
    from pref_assets.testing.fake_openai import run_fake_openai
    from pref_assets.testing.fake_pipeline import fake_settings

    with dg.instance_for_test() as instance, run_fake_openai(seed=2) as server:
        defs = build_definitions(fake_settings(server.base_url, tmp_path, batch_size=4, batches=2))
        assert defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key="batch-00000", instance=instance).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        pairs = [dg.AssetKey("preference_pairs")]
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(partition_key="batch-00000", instance=instance, asset_selection=pairs).success
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {r.key.to_user_string(): set(r.true_subset.expensively_compute_partition_keys())
                 for r in second.results if r.true_subset.size}  # fmt: skip
    assert requested == {"preference_dataset": {"batch-00000"}}
