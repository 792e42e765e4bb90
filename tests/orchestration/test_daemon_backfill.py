"""A 3-batch backfill the way an operator runs one: `dagster job backfill ... --noprompt` queues it, a
running `dagster-daemon run` launches one run per batch, and every run succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from orchestration_services import timing_tool

pytestmark = pytest.mark.slow


def test_three_batch_backfill_through_the_daemon(tmp_path: Path) -> None:
    timing = timing_tool()

    (result,) = timing.measure(["daemon"], partitions=3, batch_size=8, latency=0.2, timeout=420, keep=tmp_path)

    assert result.statuses == ["SUCCESS"] * 3
    partitions = sorted(run[0] for run in result.details["runs_created_started_ended_s"])
    assert partitions == ["batch-00000", "batch-00001", "batch-00002"]
    for key in partitions:
        assert (tmp_path / "daemon" / "daemon_data" / "dpo_pairs" / f"{key}.parquet").is_file()
