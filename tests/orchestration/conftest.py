"""Fixtures for the orchestration tests: real PostgreSQL and Redis servers, the fake LLM server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orchestration_services import (
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    run_postgres,
    run_redis,
)

from pref_assets.testing.fake_openai import FakeServer, run_fake_openai


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (skips when the binaries are missing)."""
    try:
        with run_postgres() as server:
            yield server
    except ServiceUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server (skips when the binary is missing)."""
    try:
        with run_redis(tmp_path / "redis") as server:
            yield server
    except ServiceUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeServer]:
    """The fake OpenAI-compatible server, answering after 0.2 s like a fast remote endpoint."""
    with run_fake_openai(seed=3, latency=0.2) as server:
        yield server
