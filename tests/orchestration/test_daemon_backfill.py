"""A 3-batch backfill the way an operator runs one: `dagster job backfill ... --noprompt` queues it, a
running `dagster-daemon run` launches one run per batch, and every run succeeds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from orchestration_services import REPO

pytestmark = pytest.mark.slow


def _timing_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backfill_timing", REPO / "tools" / "services" / "backfill_timing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_three_batch_backfill_through_the_daemon(tmp_path: Path) -> None:
    timing = _timing_module()

    (result,) = timing.measure(["daemon"], partitions=3, batch_size=8, latency=0.2, timeout=420, keep=tmp_path)

    assert result.statuses == ["SUCCESS"] * 3
    partitions = sorted(run[0] for run in result.details["runs_created_started_ended_s"])
    assert partitions == ["batch-00000", "batch-00001", "batch-00002"]
    for key in partitions:
        assert (tmp_path / "daemon" / "daemon_data" / "dpo_pairs" / f"{key}.parquet").is_file()
