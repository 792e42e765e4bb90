"""`judge_calibration` on the fake OpenAI server: a two-judge panel, both orders, figures, the warning check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.core.calibration import PANEL
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.calibration import ASSET, read_calibration
from pref_assets.settings import Settings
from pref_assets.testing.fake_openai import run_fake_openai


def _settings(tmp_path: Path, base_url: str, **extra: Any) -> Settings:
    return Settings.model_validate({
        "storage_dir": str(tmp_path / "store"),
        "endpoints": [{"name": "fake", "base_url": base_url, "structured_output": "json_schema"}],
        "generators": [{"name": "a", "endpoint": "fake", "model": "gen-a"},
                       {"name": "b", "endpoint": "fake", "model": "gen-b"}],
        "judges": [{"name": "j1", "endpoint": "fake", "model": "judge-1", "max_reasks": 0},
                   {"name": "j2", "endpoint": "fake", "model": "judge-2", "aspects": ["helpfulness", "honesty"]}],
        **extra,
    })  # fmt: skip


def _materialize(settings: Settings) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    return dg.materialize([defs.get_assets_def(ASSET)], resources=defs.resources,
                          instance=dg.DagsterInstance.ephemeral())  # fmt: skip


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def test_the_panel_is_measured_on_the_shipped_pairs_in_both_orders(tmp_path: Path) -> None:
    with run_fake_openai(seed=3, malformed=0.2) as fake:
        settings = _settings(tmp_path, fake.base_url, calibration={"limit": 20})
        result = _materialize(settings)
        requests = fake.stats()["requests"]
    assert result.success
    # 20 pairs x 2 orders: j1 one aspect (not re-asked), j2 two aspects (re-asked once at most)
    assert 120 <= requests <= 120 + 80
    rows = pl.read_parquet(Path(settings.storage_dir) / ASSET / "all.parquet")
    assert rows.height == 20 * 2 * 3
    assert rows.group_by("judge").len().sort("judge")["len"].to_list() == [40, 40, 40]
    assert set(rows["order"]) == {"better_first", "worse_first"}
    unread = rows.filter(pl.col("verdict").is_null())
    assert unread.height > 0 and unread["failure"].is_not_null().all(), "malformed judge answers are kept as failures"

    shown = _metadata(result)
    report = read_calibration(settings.storage_dir)
    assert report is not None and shown["per_judge"] == report
    assert list(report) == ["j1", "j2", PANEL]
    panel = report[PANEL]
    assert shown["accuracy"] == panel["accuracy"] and shown["parse_rate"] == panel["parse_rate"]
    assert report["j1"]["parse_rate"] < 1.0
    read = rows.filter((pl.col("judge") == "j1") & pl.col("verdict").is_not_null())
    assert report["j1"]["accuracy"] == round((read["verdict"] == "better").sum() / read.height, 4)
    assert sum(shown["flaws"].values()) == shown["pairs"] == 20
    assert shown["smoke_test"] is False and "note" not in shown
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "calibration_accuracy" and check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed == (panel["accuracy"] >= 0.75)
    assert not check.passed, "a judge that rates at random is well below 75%"


def test_a_user_set_with_a_bad_row_and_the_asset_outside_the_batch_jobs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {i}?", "better": f"Right answer {i}.", "worse": f"Wrong answer {i}.",
             "flaw": "wrong_facts"} for i in range(3)] + [{"prompt": "Q", "better": "x"}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with run_fake_openai(seed=4) as fake:
        settings = _settings(tmp_path, fake.base_url, calibration={"path": str(path), "min_accuracy": 0.0})
        result = _materialize(settings)
        defs = build_definitions(settings)
    shown = _metadata(result)
    assert shown["pairs"] == 3 and shown["reference_set"] == str(path)
    assert shown["rows_left_out"] == [f"{path}:4: worse missing, empty, not text or over 20000 characters"]
    assert result.get_asset_check_evaluations()[0].passed, "min_accuracy 0 always passes"
    assert dg.AssetKey(ASSET) not in defs.resolve_job_def(JOB_NAME).asset_layer.executable_asset_keys


def test_a_batch_run_selecting_every_asset_leaves_calibration_alone(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:9/v1")  # nothing listens: a call would fail the step
    defs = build_definitions(settings)
    result = dg.materialize([defs.get_assets_def(ASSET)], resources=defs.resources,
                            instance=dg.DagsterInstance.ephemeral(), tags={"dagster/partition": "batch-00000"})
    assert result.success and result.get_asset_materialization_events() == []
    assert result.get_asset_check_evaluations() == []
    assert not (Path(settings.storage_dir) / ASSET).exists()


def test_figures_no_presentation_gives_are_null_not_text(tmp_path: Path) -> None:
    with run_fake_openai(seed=5, malformed=1.0) as fake:
        settings = _settings(tmp_path, fake.base_url, calibration={"limit": 2})
        result = _materialize(settings)
    shown = _metadata(result)
    assert shown["parse_rate"] == 0.0
    assert shown["accuracy"] is None and shown["first_position_win_rate"] is None
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["accuracy"] == dg.MetadataValue.null()
