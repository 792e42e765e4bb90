"""Two Celery workers on one machine, each running the LLM step of its own run at the same time, keep to one
endpoint's ``max_concurrency`` together: the limit is counted in Redis (``limits.backend: redis``), against a fake
server that answers 429 to any request beyond that many in flight. Each run's steps go to its own queue, which
only one of the workers listens on, so the two LLM steps run in different workers at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from orchestration_services import DEPLOY, REPO, RedisServer
from test_celery_executor import _sqlite_home, _stop_group, _wait_for_line, _worker_env

from pref_assets.settings import LimitsSettings
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

pytest.importorskip("dagster_celery", reason="needs dagster-celery and redis (the project's `scale` extra)")

pytestmark = pytest.mark.slow
CONCURRENCY = 3
BATCH = 24
PARTITIONS = ("batch-00000", "batch-00001")
LLM_STEP = "generations_by_model"
# One run of the Celery code location for the partition given as argv[1]; prints its run id and success.
RUN_ONE = """
import sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
job = ReconstructableRepository.for_file(sys.argv[2], "defs", working_directory=sys.argv[3]).get_reconstructable_job(
    "preference_job"
)
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(job, instance, tags={"dagster/partition": sys.argv[1]})
    print(result.run_id, result.success, flush=True)
"""


@pytest.fixture
def capped_llm() -> Iterator[FakeServer]:
    """A fake server that answers 429 (no Retry-After, no x-ratelimit-*) beyond CONCURRENCY requests in flight."""
    with run_fake_openai(seed=8, latency=0.3, max_concurrency=CONCURRENCY, rate_limit_headers=False) as server:
        yield server


@pytest.fixture
def shared_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, capped_llm: FakeServer
) -> Path:
    """One instance, broker and settings file for the runs and both workers; limits counted in Redis db 2."""
    settings = fake_settings(capped_llm.base_url, tmp_path / "pref_data", batch_size=BATCH, batches=len(PARTITIONS))
    endpoint = settings.endpoints[0].model_copy(update={"max_concurrency": CONCURRENCY})
    settings = settings.model_copy(update={"endpoints": [endpoint], "limits": LimitsSettings(backend="redis")})
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(write_settings(settings, tmp_path / "pref_assets.yaml")))
    monkeypatch.setenv("DAGSTER_HOME", str(_sqlite_home(tmp_path / "dagster_home")))
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", redis_server.url(0))
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", redis_server.url(1))
    monkeypatch.setenv("REDIS_URL", redis_server.url(2))
    with dg.DagsterInstance.get() as instance:  # its databases exist before several processes open them at once
        instance.get_runs(limit=1)
    return tmp_path


@pytest.fixture
def two_workers(shared_env: Path) -> Iterator[list[Path]]:
    """Two `dagster-celery worker start` processes with one pool process each, listening on one queue each;
    yields their log files."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name, partition in zip(("first", "second"), PARTITIONS, strict=True):
            log = shared_env / f"worker-{name}.log"
            command = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start"]
            command += ["-A", "dagster_celery.app", "-y", str(DEPLOY / "celery" / "worker.yaml")]
            command += ["-q", _queue(partition), "-n", f"pref-assets-{name}", "--", "--concurrency", "1"]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=REPO, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            started.append((process, log))
        for process, log in started:
            _wait_for_line(log, " ready.", process, timeout=120)
        yield [log for _, log in started]
    finally:
        for process, _ in started:
            _stop_group(process)


def test_two_celery_workers_share_the_endpoint_limit_through_redis(
    two_workers: list[Path], shared_env: Path, capped_llm: FakeServer
) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_ONE, partition, str(_location(shared_env, partition)), str(REPO)],
            cwd=REPO,
            env=_worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for partition in PARTITIONS
    ]
    outcomes = [run.communicate(timeout=400) for run in runs]
    stats = capped_llm.stats()
    lines = [out.strip().splitlines()[-1].split() if out.strip() else ["", ""] for out, _ in outcomes]
    assert all(success == "True" for _, success in lines), [err[-2000:] for _, err in outcomes]

    with dg.DagsterInstance.get() as instance:
        spans = [_llm_step(instance, run_id) for run_id, _ in lines]
    (start_a, end_a, pid_a), (start_b, end_b, pid_b) = spans
    overlap = min(end_a, end_b) - max(start_a, start_b)
    assert pid_a != pid_b, "both LLM steps ran in one worker process"
    assert overlap >= 1.0, f"the two LLM steps overlapped {overlap:.1f} s only: {spans}"
    # Each worker alone may send CONCURRENCY at once; together they never exceeded it, and reached it.
    assert stats["by_status"].get("429", 0) == 0, stats["by_status"]
    assert stats["max_in_flight"] == CONCURRENCY
    for partition in PARTITIONS:
        assert (shared_env / "pref_data" / "dpo_pairs" / f"{partition}.parquet").is_file()


def _queue(partition: str) -> str:
    return f"pref-assets-{partition}"


def _location(folder: Path, partition: str) -> Path:
    """Write a code location like ``deploy/celery/definitions.py`` whose Celery executor sends every step to the
    partition's own queue; return its path."""
    path = folder / f"celery_{partition.replace('-', '_')}.py"
    path.write_text(
        "from dagster_celery import celery_executor\n"
        "from pref_assets.definitions import build_definitions\n"
        "from pref_assets.settings import load_settings\n"
        "executor = celery_executor.configured({'broker': {'env': 'DAGSTER_CELERY_BROKER_URL'},\n"
        "    'backend': {'env': 'DAGSTER_CELERY_BACKEND_URL'},\n"
        f"    'config_source': {{'task_default_queue': {_queue(partition)!r}}}}}, name='celery_queue')\n"
        "defs = build_definitions(load_settings(), executor=executor)\n"
    )
    return path


def _llm_step(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float, int]:
    """Return the start, end and worker pid of the run's LLM generation step."""
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    times: dict[str, float] = {}
    pid = 0
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is not None and event.step_key == LLM_STEP:
            times[event.event_type_value] = entry.timestamp
            pid = event.pid or pid
    return times["STEP_START"], times["STEP_SUCCESS"], pid
