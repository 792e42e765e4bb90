"""Batch mode the way a user runs it, against the fake server's Batch API: a step killed while the provider
creates its batch leaves no duplicate behind, and a `dagster-daemon run` (the ``llm_batches`` sensor) carries the
batch from the generations job through the judge job to the pairs, with no other command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from orchestration_services import timing_tool

from pref_assets.testing.fake_openai import FakeServer, run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

pytestmark = pytest.mark.slow
N = 6
PARTITION = "batch-00000"
KNOBS = {"validating_s": 0.5, "in_progress_s": 2.0, "finalizing_s": 0.5, "create_reply_delay_s": 4.0}


def _counters(server: FakeServer) -> dict[str, Any]:
    return dict(server.client.get(f"{server.root_url}/_batches").json())


def _finished_sensor_runs(timing: Any, home: Path) -> list[str]:
    """Return the statuses of the finished runs the llm_batches sensor requested (the killed run stays STARTED)."""
    records = timing.run_records(home)
    sensor = [r.dagster_run for r in records if r.dagster_run.tags.get("dagster/sensor_name") == "llm_batches"]
    return [run.status.value for run in sensor if run.status.value in timing.TERMINAL]


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not reached after {timeout:.0f} s")


def test_a_killed_submission_is_found_again_and_the_daemon_runs_the_chain_to_the_pairs(tmp_path: Path) -> None:
    timing = timing_tool()
    data = tmp_path / "data"
    with run_fake_openai(seed=3, batch=json.dumps(KNOBS)) as server:
        settings = fake_settings(server.base_url, data, batch_size=N)
        endpoint = settings.endpoints[0].model_copy(update={"mode": "batch", "batch_poll_interval_s": 1})
        settings = settings.model_copy(update={"endpoints": [endpoint]})
        home = timing.write_instance(tmp_path / "home", max_runs=2)
        env = timing.env_for(home, write_settings(settings, tmp_path / "pref_assets.yaml"))
        workspace = timing.write_workspace(tmp_path / "workspace.yaml")
        # the batch's chain (prompts and everything downstream of them)
        command = [str(timing.BIN / "dagster"), "asset", "materialize", "--select", "prompts*",
                   "--partition", PARTITION, "-m", "pref_assets.definitions"]  # fmt: skip

        # killed while the provider creates the batch: it exists there, the step never heard its id
        with (tmp_path / "killed.log").open("wb") as log:
            step = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        try:
            _wait(lambda: _counters(server)["batches"] >= 1, 180, "a batch created")
        finally:
            os.killpg(step.pid, signal.SIGKILL)
            step.wait(10)
        # the step again: it finds the batch by its metadata and creates nothing
        again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=300, check=False)
        assert again.returncode == 0, again.stdout.decode()[-3000:]
        assert _counters(server)["batches"] == 1
        assert not (data / "generations_by_model" / f"{PARTITION}.parquet").exists()

        pairs = data / "dpo_pairs" / f"{PARTITION}.parquet"
        with timing.running_daemon(workspace, env, tmp_path / "daemon.log") as daemon:
            timing.wait_for_daemons(home, daemon, tmp_path / "daemon.log")
            _wait(pairs.is_file, 400, "the pairs")
            _wait(lambda: len(_finished_sensor_runs(timing, home)) >= 2, 300, "the sensor's runs finished")
        counters, online = _counters(server), server.stats()["requests"]
        statuses = _finished_sensor_runs(timing, home)

    assert counters["batches"] == 2 and counters["lines"] == 3 * N  # one generations job, one judge job
    assert counters["repeated_after_success"] == 0 and online == 0
    assert statuses == ["SUCCESS", "SUCCESS"]  # the generations chain, then the judge chain
    frame = pl.read_parquet(pairs)
    assert frame.height == N and frame.filter(pl.col("status") == "ok").height > 0
