"""The shared stores' logic (SQLite file, Redis Lua scripts) on a fake clock, and the limiter using them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pref_assets.clients.limiter import Limiter, shared_limiter
from pref_assets.clients.limits_sqlite import SqliteStore
from pref_assets.clients.shared_limits import FULL_POLL, Budget, SharedLimits, StoreSpec, open_store, store_name

TTL = 6.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[object, Clock]:
    clock = Clock()
    if request.param == "local":
        return SqliteStore(tmp_path / "e.sqlite", lease_ttl=TTL, clock=clock), clock
    from pref_assets.clients.limits_redis import RedisStore

    url = request.getfixturevalue("redis_url")
    return RedisStore(url, f"test:{tmp_path.name}", lease_ttl=TTL, clock=clock), clock


def test_leases_are_limited_to_max_concurrency_and_freed_by_release(store: tuple[object, Clock]) -> None:
    s, _ = store
    budget = Budget(max_concurrency=2)
    assert s.acquire_now("a", budget, 0) == 0
    assert s.acquire_now("b", budget, 0) == 0
    assert s.acquire_now("c", budget, 0) == FULL_POLL
    s.settle(["a"], budget, 0, 0)
    assert s.acquire_now("c", budget, 0) == 0
    assert s.in_flight() == 2


def test_an_unrenewed_lease_expires_after_its_ttl_and_a_renewed_one_does_not(store: tuple[object, Clock]) -> None:
    s, clock = store
    budget = Budget(max_concurrency=2)
    s.acquire_now("kept", budget, 0)
    s.acquire_now("orphan", budget, 0)
    clock.now += TTL - 1
    s.renew(["kept"])
    assert s.acquire_now("c", budget, 0) == FULL_POLL
    clock.now += 1.5  # the orphan is past its TTL, the renewed lease is not
    assert s.acquire_now("c", budget, 0) == 0
    assert s.acquire_now("d", budget, 0) == FULL_POLL


def test_renewing_a_released_lease_does_not_bring_it_back(store: tuple[object, Clock]) -> None:
    s, _ = store
    budget = Budget(max_concurrency=1)
    s.acquire_now("a", budget, 0)
    s.settle(["a"], budget, 0, 0)
    s.renew(["a"])
    assert s.in_flight() == 0


def test_the_request_bucket_allows_one_second_of_burst_then_paces(store: tuple[object, Clock]) -> None:
    s, clock = store
    budget = Budget(max_concurrency=100, rpm=120)  # 2 per second, burst 2
    assert [s.acquire_now(f"r{i}", budget, 0) for i in range(2)] == [0, 0]
    assert s.acquire_now("r2", budget, 0) == pytest.approx(0.5)
    clock.now += 0.5
    assert s.acquire_now("r2", budget, 0) == 0
    assert s.acquire_now("r3", budget, 0) == pytest.approx(0.5)


def test_the_token_bucket_charges_estimates_and_corrections(store: tuple[object, Clock]) -> None:
    s, clock = store
    budget = Budget(max_concurrency=100, tpm=6000)  # 100 tokens per second, capacity 100
    assert s.acquire_now("a", budget, 80) == 0
    s.settle(["a"], budget, 70, 0)  # it used 150: 70 more than estimated
    assert s.acquire_now("b", budget, 50) == pytest.approx(1.0)  # level -50, needs 50
    clock.now += 1.0
    assert s.acquire_now("b", budget, 50) == 0


def test_a_pause_holds_every_acquire_until_it_ends(store: tuple[object, Clock]) -> None:
    s, clock = store
    budget = Budget(max_concurrency=10)
    s.settle([], budget, 0, 3.0)
    s.settle([], budget, 0, 1.0)  # a shorter pause does not shorten it
    assert s.acquire_now("a", budget, 0) == pytest.approx(3.0)
    clock.now += 3.01
    assert s.acquire_now("a", budget, 0) == 0


def test_a_refused_acquire_takes_nothing(store: tuple[object, Clock]) -> None:
    s, _ = store
    budget = Budget(max_concurrency=1, rpm=60)
    assert s.acquire_now("a", budget, 0) == 0
    assert s.acquire_now("b", budget, 0) == FULL_POLL
    s.settle(["a"], budget, 0, 0)
    assert s.acquire_now("b", budget, 0) == pytest.approx(1.0)  # the refusal took no request token


def test_two_limiters_on_one_store_share_the_concurrency(tmp_path: Path) -> None:
    spec = StoreSpec("local", str(tmp_path))
    budget = Budget(max_concurrency=3)
    limiters = [
        Limiter(max_concurrency=3, shared=SharedLimits(open_store(spec, "http://x/v1"), budget)) for _ in range(2)
    ]
    peak = 0
    running = 0

    async def one(limiter: Limiter) -> None:
        nonlocal peak, running
        async with limiter.slot(1):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    async def main() -> None:
        await asyncio.gather(*(one(limiters[i % 2]) for i in range(30)))

    asyncio.run(main())
    assert peak == 3
    for limiter in limiters:
        assert limiter.shared is not None
        limiter.shared.flush()
        assert limiter.shared.held() == 0
    assert SqliteStore(tmp_path / f"{store_name('http://x/v1')}.sqlite", lease_ttl=TTL).in_flight() == 0


def test_a_retry_after_pause_reaches_the_other_limiters(tmp_path: Path) -> None:
    spec = StoreSpec("local", str(tmp_path))
    budget = Budget(max_concurrency=4)
    first, second = (Limiter(max_concurrency=4, shared=SharedLimits(open_store(spec, "e"), budget)) for _ in "ab")
    first.record_rate_limited(0.4, {})
    assert first.shared is not None
    first.shared.flush()

    async def wait_for_turn() -> float:
        started = time.monotonic()
        async with second.slot(1):
            return time.monotonic() - started

    assert 0.3 < asyncio.run(wait_for_turn()) < 1.0


def test_shared_limiter_keeps_one_limiter_per_store_and_none_for_the_process_backend(tmp_path: Path) -> None:
    local = StoreSpec("local", str(tmp_path))
    a = shared_limiter("http://y/v1", max_concurrency=2, rpm=None, tpm=None, store=local)
    assert a is shared_limiter("http://y/v1", max_concurrency=2, rpm=None, tpm=None, store=local)
    assert a.shared is not None
    process = shared_limiter("http://y/v1", max_concurrency=2, rpm=None, tpm=None, store=StoreSpec("process", ""))
    assert process.shared is None and process is not a
