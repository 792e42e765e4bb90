"""The watched folder the way a user runs it: a `dagster-daemon run` with a folder source picks up prompt
files dropped into the folder, adds their batches and runs them to the end (review and the published set), with no
other command."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from orchestration_services import timing_tool

from pref_assets.settings import SourceSettings
from pref_assets.testing.fake_openai import FakeServer
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

pytestmark = pytest.mark.slow


def _drop(folder: Path, name: str, instructions: list[str]) -> None:
    """Write a prompt file the way the README says: under a hidden name, then rename it into place."""
    hidden = folder / f".{name}"
    hidden.write_text("".join(json.dumps({"instruction": text}) + "\n" for text in instructions))
    hidden.rename(folder / name)


def _partitions(records: list[object]) -> dict[str, str]:
    return {r.dagster_run.tags["dagster/partition"]: r.dagster_run.status.value for r in records}  # type: ignore[attr-defined]


def test_the_daemon_turns_dropped_files_into_batches_and_runs(tmp_path: Path, fake_llm: FakeServer) -> None:
    timing = timing_tool()
    incoming, data = tmp_path / "incoming", tmp_path / "data"
    incoming.mkdir()
    source = SourceSettings(kind="folder", folder=str(incoming), poll_interval_s=1, min_file_age_s=0)
    settings = fake_settings(fake_llm.base_url, data, batch_size=4).model_copy(update={"source": source})
    home = timing.write_instance(tmp_path / "home", max_runs=3)
    env = timing.env_for(home, write_settings(settings, tmp_path / "pref_assets.yaml"))
    workspace = timing.write_workspace(tmp_path / "workspace.yaml")
    _drop(incoming, "first.jsonl", [f"Name {i} uses for a paper clip." for i in range(6)])

    with timing.running_daemon(workspace, env, tmp_path / "daemon.log") as daemon:
        timing.wait_for_daemons(home, daemon, tmp_path / "daemon.log")
        first = _partitions(timing.wait_for_runs(home, 2, timeout=300))
        _drop(incoming, "second.jsonl", ["Explain tides to a child.", "Why is the sky dark at night?"])
        both = _partitions(timing.wait_for_runs(home, 3, timeout=300))

    assert first == {"first.jsonl/batch-00000": "SUCCESS", "first.jsonl/batch-00001": "SUCCESS"}
    assert both == first | {"second.jsonl/batch-00000": "SUCCESS"}
    for key in both:
        assert (data / "dpo_pairs" / f"{key}.parquet").is_file()
        assert (data / "preference_pairs" / f"{key}.parquet").is_file()
    # Each run went on to review and the published set, which holds every batch's final pairs.
    published = pl.read_parquet(data / "published" / "data" / "train.parquet")
    final = {key: pl.read_parquet(data / "preference_pairs" / f"{key}.parquet") for key in both}
    assert published.height == sum(int((f["status"] == "ok").sum()) for f in final.values()) > 0
    assert set(published["batch"]) == {key for key, f in final.items() if (f["status"] == "ok").any()}
