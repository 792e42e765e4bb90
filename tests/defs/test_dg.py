"""`dg`, run from the project's venv, loads the project: `dg check defs` passes and `dg list defs` lists every asset
with its kinds and owners, the named jobs and the sensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DG = Path(sys.executable).parent / "dg"
CHAIN = ["prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records",
         "human_feedback", "preference_pairs", "preference_dataset"]  # fmt: skip


def _dg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DAGSTER_TELEMETRY_DISABLED": "1"} | (env or {})
    return subprocess.run([str(DG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_dg_check_defs_passes() -> None:
    result = _dg("check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_list_defs_lists_every_asset_with_kinds_owners_and_the_named_jobs() -> None:
    result = _dg("list", "defs", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert set(CHAIN) <= set(assets)
    for name in CHAIN:
        assert "polars" in assets[name]["kinds"] and {"team": "pref-assets"} in assets[name]["owners"], name
    assert {"preference_job", "review_job", "argilla_push_job"} <= {j["name"] for j in listed["jobs"]}
    assert {"argilla_responses", "follow_upstream"} <= {s["name"] for s in listed["sensors"]}


def test_dg_launch_runs_one_batch_as_a_named_job_or_chosen_assets(tmp_path: Path) -> None:
    import dagster as dg

    from pref_assets.testing.fake_openai import run_fake_openai
    from pref_assets.testing.fake_pipeline import fake_settings, write_settings

    home = tmp_path / "home"
    home.mkdir()
    with run_fake_openai(seed=4) as server:
        config = write_settings(fake_settings(server.base_url, tmp_path / "data", 4, 2), tmp_path / "c.yaml")
        env = {"PREF_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}
        job = _dg("launch", "--job", "preference_job", "--partition", "batch-00000", env=env)
        assets = _dg("launch", "--assets", "prompts", "--partition", "batch-00001", env=env)
    assert job.returncode == 0, job.stderr[-3000:]
    assert assets.returncode == 0, assets.stderr[-3000:]
    assert (tmp_path / "data" / "published" / "data" / "train.parquet").is_file()
    assert (tmp_path / "data" / "prompts" / "batch-00001.parquet").is_file()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        names = sorted(r.job_name for r in instance.get_runs())
    assert names == ["__ASSET_JOB", "preference_job"]
