"""`judge_calibration` on the real embedded llama.cpp judge: it runs, and its figures say they are a smoke test."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pref_assets.definitions import build_definitions
from pref_assets.defs.calibration import ASSET, SMOKE_TEST
from pref_assets.settings import Settings

pytestmark = pytest.mark.slow


def test_the_embedded_judge_calibrates_as_a_smoke_test(tmp_path: Path) -> None:
    settings = Settings(storage_dir=str(tmp_path), calibration={"limit": 1})
    defs = build_definitions(settings)
    asset = defs.get_assets_def(ASSET)
    assert asset.descriptions_by_key[dg.AssetKey(ASSET)].startswith("SMOKE TEST")
    result = dg.materialize([asset], resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert metadata["smoke_test"] is True and metadata["note"] == SMOKE_TEST
    assert metadata["pairs"] == 1 and metadata["judges"] == ["smollm2-judge"]
    rows = pl.read_parquet(tmp_path / ASSET / "all.parquet")
    assert rows.height == 1 * 2 * 2
    judged = rows.filter(pl.col("judge") == "smollm2-judge")
    assert judged["verdict"].is_not_null().sum() + judged["failure"].is_not_null().sum() == judged.height
    assert metadata["parse_rate"] == round(judged["verdict"].is_not_null().sum() / judged.height, 4)
    [check] = result.get_asset_check_evaluations()
    assert check.passed or SMOKE_TEST in (check.description or "")
