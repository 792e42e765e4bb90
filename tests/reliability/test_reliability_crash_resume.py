"""Crash and resume: a run killed with SIGKILL in the middle of an LLM stage, then run again.

The rerun must finish, lose no prompt, send again only the requests whose answers never reached the
request cache (those in flight at the kill), and produce exactly the pairs of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from reliability_support import (
    driver_command,
    driver_env,
    fake_settings,
    read_stage,
    run_partition,
    write_prompts,
)

from pref_assets.clients.cache import RequestCache
from pref_assets.settings import Settings
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

N = 30
PARTITION = "batch-00000"
CONCURRENCY = 8
SERVER = {"latency": 0.3, "seed": 21}
GENERATION_CALLS = 2 * N
ALL_CALLS = 3 * N


def _settings(server: FakeServer, work: Path) -> Settings:
    source = work / "prompts.jsonl"
    write_prompts(source, N)
    return fake_settings(
        server.base_url, work / "store", source, batch_size=N, endpoint={"max_concurrency": CONCURRENCY}
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The pairs of a run that nobody killed: its own server (same config), storage and cache."""
    work = tmp_path_factory.mktemp("uninterrupted")
    with run_fake_openai(**SERVER) as server:
        settings = _settings(server, work)
        assert run_partition(settings, PARTITION).success
        assert server.stats()["requests"] == ALL_CALLS
    return read_stage(settings.storage_dir, "dpo_pairs", PARTITION)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "kill_at"),
    [
        ("generations_by_model", GENERATION_CALLS // 2),
        ("ratings", GENERATION_CALLS + N // 2),
    ],
)
def test_killed_run_resumes_losing_nothing_and_resending_only_unstored_answers(
    tmp_path: Path, uninterrupted: pl.DataFrame, stage: str, kill_at: int
) -> None:
    with run_fake_openai(**SERVER) as server:
        settings = _settings(server, tmp_path)
        command = driver_command(settings, PARTITION, tmp_path / "never-written.json", tmp_path)
        with (tmp_path / "killed-run.log").open("wb") as log:
            process = subprocess.Popen(command, env=driver_env(), stdout=log, stderr=subprocess.STDOUT)
            at_kill = _kill_when(process, server, lambda s: s["by_status"].get("200", 0) >= kill_at)
        settled = _settle(server)
        store = Path(settings.storage_dir)
        assert not (store / stage / f"{PARTITION}.parquet").exists(), f"the kill came after {stage} finished"
        if stage == "ratings":
            assert (store / "generations_by_model" / f"{PARTITION}.parquet").exists()
        cache = RequestCache(settings.cache_path())
        stored = cache.count()
        cache.close()
        # Answered by the server but never stored: the requests in flight when the process died (at most
        # the concurrency window, plus answers read off the socket but not yet written to the cache).
        lost = settled["by_status"]["200"] - stored
        assert 0 <= lost <= 2 * CONCURRENCY

        assert run_partition(settings, PARTITION).success
        final = server.stats()

    resent = final["requests"] - settled["requests"]
    assert resent == ALL_CALLS - stored, "the rerun sent a request whose answer was in the cache"
    assert final["repeated_after_success"] == lost
    pairs = read_stage(store, "dpo_pairs", PARTITION)
    prompts = read_stage(store, "prompts", PARTITION)
    assert set(pairs["prompt_id"]) == set(prompts["prompt_id"]) and pairs.height == N
    assert pairs.filter(pl.col("status") == "failed").is_empty()
    assert pairs.equals(uninterrupted)
    print(
        f"\nkilled during {stage}: {at_kill['by_status']['200']} answers before the kill, {stored} in the "
        f"cache, {lost} answered but never stored, rerun sent {resent}, "
        f"repeated_after_success {final['repeated_after_success']}"
    )


def _kill_when(
    process: subprocess.Popen[bytes], server: FakeServer, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """SIGKILL ``process`` as soon as the server's counters satisfy ``ready``; return those counters."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended (code {process.returncode}) before the kill point")
        stats = server.stats()
        if ready(stats):
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
            return stats
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise AssertionError("the kill point was never reached")


def _settle(server: FakeServer) -> dict[str, Any]:
    """Wait until the server has finished the requests the dead process left in flight."""
    deadline = time.monotonic() + 30
    while (stats := server.stats())["in_flight"] > 0:
        assert time.monotonic() < deadline, "requests still in flight 30 s after the kill"
        time.sleep(0.05)
    return stats
