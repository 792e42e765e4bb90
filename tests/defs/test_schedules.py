from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from pref_assets.definitions import build_definitions
from pref_assets.defs.schedules import SCHEDULE_NAME
from pref_assets.settings import Settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_schedule_requests_the_next_unmaterialized_batches() -> None:
    defs = build_definitions(Settings(batch_size=40, schedule={"batches_per_tick": 2}))
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    repo = defs.get_repository_def()
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("dpo_pairs", partition="batch-00000"))
        result = schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW, repository_def=repo)
        )
        assert [r.partition_key for r in result.run_requests] == ["batch-00001", "batch-00002"]
        for key in ("batch-00001", "batch-00002", "batch-00003"):
            instance.report_runless_asset_event(dg.AssetMaterialization("dpo_pairs", partition=key))
        assert schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW, repository_def=repo)
        ).skip_message
