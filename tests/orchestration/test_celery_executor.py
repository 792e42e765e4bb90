"""deploy/celery against a real redis-server and a real Celery worker: one batch runs end to end and
every step runs in the worker's processes, not in the process that launched the run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from orchestration_services import DEPLOY, REPO, RedisServer

from pref_assets.definitions import JOB_NAME
from pref_assets.testing.fake_openai import FakeServer
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

pytest.importorskip("dagster_celery", reason="needs dagster-celery and redis (the project's `scale` extra)")

pytestmark = pytest.mark.slow
PARTITION = "batch-00000"
CELERY_DEFINITIONS = DEPLOY / "celery" / "definitions.py"


def _sqlite_home(directory: Path) -> Path:
    """A persistent (not ephemeral) instance that the test process and the worker share."""
    directory.mkdir(parents=True)
    (directory / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {directory / 'storage'}\ntelemetry:\n  enabled: false\n"
    )
    return directory


@pytest.fixture
def celery_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, fake_llm: FakeServer
) -> Path:
    """Point the test process (and so the worker it starts) at one instance, broker and settings file."""
    settings = fake_settings(fake_llm.base_url, tmp_path / "pref_data")
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(write_settings(settings, tmp_path / "pref_assets.yaml")))
    monkeypatch.setenv("DAGSTER_HOME", str(_sqlite_home(tmp_path / "dagster_home")))
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", redis_server.url(0))
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", redis_server.url(1))
    return tmp_path


def _worker_env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the worker CLI runs `celery` from PATH
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _wait_for_line(log: Path, needle: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the worker CLI and the celery processes it started (their own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture
def celery_worker(celery_env: Path) -> Iterator[Path]:
    """A `dagster-celery worker start` process with two pool processes; yields its log file."""
    log = celery_env / "worker.log"
    command = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
    command += ["-y", str(DEPLOY / "celery" / "worker.yaml"), "-n", "pref-assets-test", "--", "--concurrency", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_line(log, " ready.", process, timeout=90)
        yield log
    finally:
        _stop_group(process)


def test_one_batch_runs_on_a_celery_worker(celery_worker: Path, celery_env: Path) -> None:
    recon_job = ReconstructableRepository.for_file(
        str(CELERY_DEFINITIONS), "defs", working_directory=str(REPO)
    ).get_reconstructable_job(JOB_NAME)

    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(recon_job, instance, tags={"dagster/partition": PARTITION})
        assert result.success, _failure_text(result)
        pairs = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("dpo_pairs"), asset_partitions=[PARTITION]), limit=1
        ).records

    step_successes = [event for event in result.all_events if event.is_step_success]
    assert step_successes
    assert os.getpid() not in {event.pid for event in step_successes}
    assert [record.run_id for record in pairs] == [result.run_id]
    assert (celery_env / "pref_data" / "dpo_pairs" / f"{PARTITION}.parquet").is_file()
    worker_log = celery_worker.read_text(errors="replace")
    succeeded = re.findall(r"Task execute_plan\[[0-9a-f-]+\] succeeded", worker_log)
    assert len(succeeded) == len(step_successes), worker_log[-3000:]


def _failure_text(result: dg.JobExecutionResult) -> str:
    events = [e for e in result.all_events if e.is_failure or e.event_type_value == "ENGINE_EVENT"]
    return "\n".join(str(e.message) for e in events)[-4000:]
