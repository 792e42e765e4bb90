"""Three client processes, and three Dagster runs in their own processes, share one endpoint's configured limits
through a store (a SQLite file, or a real redis-server) against a fake server that enforces the same limits with
bare 429s (no Retry-After, no x-ratelimit-* headers, as vLLM and many gateways): few 429s, at least 90% of the rate
cap, and the slots of a process killed with SIGKILL are free again within seconds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from reliability_support import driver_command, driver_env, read_stage

from pref_assets.clients.limits_sqlite import SqliteStore
from pref_assets.clients.shared_limits import SPARE_IDLE_S, Budget, SharedLimits, StoreSpec, open_store
from pref_assets.settings import CacheSettings, LimitsSettings
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "shared_limits_client.py"
PROCESSES = 3
RPM = 600  # 10 a second; the server allows one second of burst, as the client's buckets do
PER_PROCESS = 40
CONCURRENCY = 4
LEASE_TTL = 3.0

pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "local":
        return StoreSpec("local", str(tmp_path / "limits"), LEASE_TTL)
    return StoreSpec("redis", request.getfixturevalue("redis_url"), LEASE_TTL)


def _client(server: FakeServer, spec: StoreSpec, tag: str, start_at: float, **flags: object) -> subprocess.Popen[str]:
    command = [sys.executable, str(CLIENT), "--base-url", server.base_url, "--backend", spec.backend]
    command += ["--location", spec.location, "--lease-ttl", str(spec.lease_ttl), "--tag", tag]
    command += ["--start-at", str(start_at), "--max-concurrency", str(CONCURRENCY)]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    root = str(HERE.parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _run_clients(server: FakeServer, spec: StoreSpec, **flags: object) -> list[dict[str, object]]:
    start_at = time.time() + 4.0  # every process has imported and connected by then
    processes = [_client(server, spec, f"p{i}", start_at, **flags) for i in range(PROCESSES)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_three_processes_keep_to_the_rate_cap_together(store: StoreSpec) -> None:
    with run_fake_openai(rpm=RPM, burst=RPM // 60, rate_limit_headers=False, latency=0.05) as server:
        reports = _run_clients(server, store, rpm=RPM, requests=PER_PROCESS)
        stats = server.stats()
    kinds = sum((Counter(r["kinds"]) for r in reports), Counter())
    wall = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    achieved = kinds["ok"] / wall * 60
    print(f"{store.backend}: {achieved:.0f}/{RPM} rpm in {wall:.1f} s, server statuses {stats['by_status']}")
    assert kinds == {"ok": PROCESSES * PER_PROCESS}
    assert stats["by_status"].get("429", 0) <= 5, stats["by_status"]
    assert achieved >= 0.9 * RPM, f"{achieved:.0f} of {RPM} requests per minute in {wall:.1f} s"


def test_three_processes_keep_to_the_concurrency_cap_together(store: StoreSpec) -> None:
    with run_fake_openai(max_concurrency=CONCURRENCY, latency=0.1) as server:
        reports = _run_clients(server, store, requests=30)
        stats = server.stats()
    assert sum((Counter(r["kinds"]) for r in reports), Counter()) == {"ok": PROCESSES * 30}
    assert stats["by_status"].get("429", 0) == 0 and stats["max_in_flight"] == CONCURRENCY


def test_per_process_limits_multiply_by_the_number_of_processes(tmp_path: Path) -> None:
    """The control: the same three processes counting their limits each for itself overrun the server."""
    with run_fake_openai(max_concurrency=CONCURRENCY, latency=0.1) as server:
        _run_clients(server, StoreSpec("process", ""), requests=30)
        stats = server.stats()
    assert stats["by_status"].get("429", 0) > 0 or stats["max_in_flight"] > CONCURRENCY


def test_a_killed_process_frees_its_slots_within_the_lease_ttl(store: StoreSpec) -> None:
    with run_fake_openai(latency=3600.0) as server:  # requests hang: the victim holds every slot until killed
        victim = _client(server, store, "victim", 0.0, requests=CONCURRENCY * 3)
        probe = open_store(store, server.base_url)
        deadline = time.monotonic() + 30
        while _in_flight(probe) < CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _in_flight(probe) == CONCURRENCY
        time.sleep(LEASE_TTL + 1)  # renewed while the process lives
        assert _in_flight(probe) == CONCURRENCY
        victim.kill()
        victim.wait(10)
        killed = time.monotonic()
        while _in_flight(probe) and time.monotonic() - killed < 30:
            time.sleep(0.1)
        freed = time.monotonic() - killed
    assert _in_flight(probe) == 0 and freed <= LEASE_TTL + 1.0


def _in_flight(store: object) -> int:
    assert isinstance(store, SqliteStore) or hasattr(store, "in_flight")
    return int(store.in_flight())  # type: ignore[attr-defined]


def test_three_dagster_runs_keep_to_the_rate_cap_together(tmp_path: Path) -> None:
    """Three runs of the whole job, one batch each, in three processes at once (as a backfill with the ``llm`` pool
    at 3 or three workers run them), sharing the limits file under their storage_dir."""
    batch, rpm = 30, 600
    with run_fake_openai(rpm=rpm, burst=rpm // 60, rate_limit_headers=False, latency=0.05) as server:
        settings = fake_settings(server.base_url, tmp_path / "store", batch_size=batch, batches=PROCESSES)
        endpoint = settings.endpoints[0].model_copy(update={"rpm": rpm, "max_concurrency": 8})
        settings = settings.model_copy(update={
            "endpoints": [endpoint], "limits": LimitsSettings(backend="local"), "cache": CacheSettings(enabled=False)
        })  # fmt: skip
        partitions = [f"batch-{i:05d}" for i in range(PROCESSES)]
        ok_times: list[tuple[float, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_ok, args=(server, ok_times, stop), daemon=True)
        watcher.start()
        runs = [
            subprocess.Popen(driver_command(settings, partition, tmp_path / f"{partition}.json", tmp_path),
                             env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for partition in partitions
        ]  # fmt: skip
        outcomes = [run.communicate(timeout=300) for run in runs]
        stop.set()
        watcher.join()
        stats = server.stats()
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outcomes]
    for partition in partitions:
        pairs = read_stage(settings.storage_dir, "dpo_pairs", partition)
        assert pairs.height == batch and (pairs["status"] == "ok").sum() > 0
    moving = [(t, n) for t, n in ok_times if 0 < n < ok_times[-1][1]]  # while answers were coming in
    (first, sent_first), (last, sent_last) = moving[0], moving[-1]
    achieved = (sent_last - sent_first) / (last - first) * 60
    print(f"three runs: {achieved:.0f}/{rpm} rpm over {last - first:.1f} s, server statuses {stats['by_status']}")
    assert stats["by_status"].get("429", 0) <= 5, stats["by_status"]
    assert stats["by_status"]["200"] >= 3 * batch * PROCESSES
    assert achieved >= 0.9 * rpm, f"{achieved:.0f} of {rpm} requests per minute over {last - first:.1f} s"


def _watch_ok(server: FakeServer, seen: list[tuple[float, int]], stop: threading.Event) -> None:
    """Note (time, answers with HTTP 200 so far) every 0.1 s until ``stop``, and once more after."""
    while True:
        done = stop.is_set()
        seen.append((time.monotonic(), int(server.stats()["by_status"].get("200", 0))))
        if done:
            return
        stop.wait(0.1)


def test_a_lease_given_back_passes_to_the_next_request_of_the_process_without_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "limits.sqlite", lease_ttl=LEASE_TTL)
    trips = Counter[str]()
    ask_store = store.acquire

    async def counted(lease: str, budget: Budget, tokens: float) -> float:
        trips["acquire"] += 1
        return await ask_store(lease, budget, tokens)

    store.acquire = counted  # type: ignore[method-assign]
    concurrency_only = SharedLimits(store, Budget(max_concurrency=2), lease_ttl=LEASE_TTL)
    first, _ = asyncio.run(concurrency_only.acquire(10))
    assert first is not None
    concurrency_only.release(first)
    again, _ = asyncio.run(concurrency_only.acquire(10))
    assert again == first and trips["acquire"] == 1 and store.in_flight() == 1
    concurrency_only.release(first)
    deadline = time.monotonic() + 5
    while store.in_flight() and time.monotonic() < deadline:  # nobody took it: back to the store
        time.sleep(SPARE_IDLE_S)
    assert store.in_flight() == 0 and concurrency_only.held() == 0
    rated = SharedLimits(store, Budget(max_concurrency=2, rpm=6000), lease_ttl=LEASE_TTL)
    lease, _ = asyncio.run(rated.acquire(10))
    assert lease is not None
    rated.release(lease)
    asyncio.run(rated.acquire(10))  # a rate budget is taken from the store for every request
    assert trips["acquire"] == 3
