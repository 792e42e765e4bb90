"""Three client processes share one endpoint's configured limits through a store (a SQLite file, or a real
redis-server) against a fake server that enforces the same limits with bare 429s (no Retry-After, no
x-ratelimit-* headers, as vLLM and many gateways): few 429s, at least 90% of the rate cap, and the slots of a
process killed with SIGKILL are free again within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pref_assets.clients.limits_sqlite import SqliteStore
from pref_assets.clients.shared_limits import StoreSpec, open_store
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

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
