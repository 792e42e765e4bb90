"""Runs of a range of batches in one Dagster run, as a backfill with ``backfill.partitions_per_run`` launches."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import Settings

RANGE_DRIVER = Path(__file__).resolve().parent / "range_driver.py"


def run_range(
    settings: Settings, start: str, end: str, instance: dg.DagsterInstance | None = None, **options: Any
) -> dg.ExecuteInProcessResult:
    """Run the whole preference job for the batches ``start`` to ``end`` in one run in this process."""
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return job.execute_in_process(instance=instance or dg.DagsterInstance.ephemeral(), tags=tags, **options)


def range_command(settings_command: list[str]) -> list[str]:
    """Return ``settings_command`` (from ``driver_command`` with a ``START...END`` partition) run by the range
    driver."""
    return [sys.executable, str(RANGE_DRIVER), *settings_command[2:]]
