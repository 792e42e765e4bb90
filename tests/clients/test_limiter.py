from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from pref_assets.clients.limiter import CircuitOpenError, Limiter, TokenBucket, bucket, shared_limiter
from pref_assets.clients.llm import ChatClient, ChatRequest
from pref_assets.clients.retry import RetryPolicy
from pref_assets.clients.runner import Budget, EndpointParkedError, Prices, run_calls
from pref_assets.core.calls import Call


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    b = bucket(120, now=0.0)  # 2 per second, burst 2
    assert b.wait_time(1, 0.0) == 0
    b.take(1, 0.0)
    b.take(1, 0.0)
    assert b.wait_time(1, 0.0) == pytest.approx(0.5)
    assert b.wait_time(1, 0.5) == 0
    b.take(1, 10.0)
    assert b.level == pytest.approx(1.0)


def test_unlimited_bucket_never_waits() -> None:
    assert TokenBucket(None, 0.0).wait_time(10_000, 0.0) == 0


def test_aimd_halves_on_429_at_most_once_a_second_and_grows_on_success() -> None:
    clock = Clock()
    limiter = Limiter(max_concurrency=64, clock=clock)
    limiter.record_rate_limited(None, {})
    limiter.record_rate_limited(None, {})
    assert limiter.window == 32
    clock.now += 1.5
    limiter.record_rate_limited(2.0, {})
    assert limiter.window == 16 and limiter.paused_until == clock.now + 2.0
    for _ in range(16):
        limiter.record_success(0, 0, {})
    assert 16.9 < limiter.window < 17.1


def test_window_never_exceeds_the_configured_concurrency() -> None:
    limiter = Limiter(max_concurrency=4)
    for _ in range(100):
        limiter.record_success(0, 0, {})
    assert limiter.window == 4


def test_limits_are_learned_from_rate_limit_headers() -> None:
    limiter = Limiter(max_concurrency=8)
    limiter.record_success(10, 10, {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "60000"})
    assert limiter.requests.rate == pytest.approx(10.0)
    assert limiter.tokens.rate == pytest.approx(1000.0)


def test_configured_limits_win_over_headers() -> None:
    limiter = Limiter(max_concurrency=8, rpm=60)
    limiter.record_success(0, 0, {"x-ratelimit-limit-requests": "6000"})
    assert limiter.requests.rate == pytest.approx(1.0)


def test_breaker_opens_after_unreachable_attempts_in_a_row_and_success_resets_it() -> None:
    clock = Clock()
    limiter = Limiter(max_concurrency=2, breaker_threshold=3, breaker_cooldown=10, clock=clock)
    limiter.record_unreachable("refused")
    limiter.record_unreachable("refused")
    limiter.record_success(0, 0, {})
    limiter.record_unreachable("refused")
    limiter.record_unreachable("refused")
    assert limiter.open_until == 0
    limiter.record_unreachable("refused")
    with pytest.raises(CircuitOpenError):
        asyncio.run(take_slot(limiter))
    assert limiter.in_flight == 0
    clock.now += 11
    asyncio.run(take_slot(limiter))


async def take_slot(limiter: Limiter) -> None:
    async with limiter.slot(1):
        pass


def test_a_request_that_keeps_failing_counts_once_however_often_it_is_retried() -> None:
    limiter = Limiter(max_concurrency=2, breaker_threshold=3, clock=Clock())
    poison = object()
    for _ in range(10):
        limiter.record_failure("HTTP 500: poison", request=poison, since=0)
    assert limiter.failed_requests == {poison} and limiter.open_until == 0
    asyncio.run(take_slot(limiter))


def test_failures_of_requests_first_sent_before_the_last_success_do_not_count() -> None:
    limiter = Limiter(max_concurrency=2, breaker_threshold=2, clock=Clock())
    since = limiter.successes
    limiter.record_success(0, 0, {})
    for _ in range(5):
        limiter.record_failure("HTTP 500: old", request=object(), since=since)
    assert not limiter.failed_requests and limiter.open_until == 0
    limiter.record_failure("HTTP 500: new", request=object(), since=limiter.successes)
    assert len(limiter.failed_requests) == 1


def test_different_failing_requests_without_a_probe_park_the_endpoint() -> None:
    clock = Clock()
    limiter = Limiter(max_concurrency=2, breaker_threshold=3, breaker_cooldown=10, clock=clock)
    for i in range(3):
        limiter.record_failure(f"HTTP 503: down {i}", request=i, since=0)
    assert limiter.open_until == clock.now + 10
    with pytest.raises(CircuitOpenError, match=r"parked after 3 different requests failed in a row; last: HTTP 503"):
        asyncio.run(take_slot(limiter))


def test_one_probe_decides_and_an_answering_endpoint_is_not_parked() -> None:
    clock = Clock()
    limiter = Limiter(max_concurrency=4, breaker_threshold=3, breaker_cooldown=10, clock=clock)
    answered = asyncio.Event()
    sent: list[str] = []

    async def probe() -> str | None:
        await answered.wait()
        return None

    async def attempt(name: str) -> None:
        async with limiter.slot(1):
            sent.append(name)

    async def go() -> None:
        for i in range(6):  # the third different request starts the probe; the rest neither count nor probe again
            limiter.record_failure("HTTP 500: x", request=i, since=0, probe=probe)
        waiting = asyncio.create_task(attempt("held"))
        await asyncio.sleep(0.01)
        assert sent == [] and limiter.probes == 1  # new attempts wait for the probe's answer
        answered.set()
        await waiting

    asyncio.run(go())
    assert sent == ["held"] and limiter.probes == 1 and limiter.open_until == 0
    assert limiter.successes == 1 and not limiter.failed_requests and limiter.failures_in_row == 0


def test_a_failed_probe_parks_the_endpoint_naming_the_probe_and_the_last_error() -> None:
    clock = Clock()
    limiter = Limiter(max_concurrency=4, breaker_threshold=2, breaker_cooldown=10, clock=clock)

    async def probe() -> str | None:
        return "a health probe to http://llm.test/v1/chat/completions (model m) failed too: HTTP 500: down"

    async def go() -> None:
        limiter.record_failure("HTTP 500: a", request="a", since=0, probe=probe)
        limiter.record_failure("HTTP 500: b", request="b", since=0, probe=probe)
        with pytest.raises(CircuitOpenError) as raised:
            await take_slot(limiter)
        assert str(raised.value) == (
            "endpoint parked after 2 different requests failed in a row and a health probe to "
            "http://llm.test/v1/chat/completions (model m) failed too: HTTP 500: down; last: HTTP 500: b"
        )
        clock.now += 11
        await take_slot(limiter)

    asyncio.run(go())
    assert limiter.probes == 1


def test_shared_limiter_is_one_per_endpoint_and_settings() -> None:
    a = shared_limiter("http://a", max_concurrency=4, rpm=None, tpm=None)
    assert shared_limiter("http://a", max_concurrency=4, rpm=None, tpm=None) is a
    assert shared_limiter("http://b", max_concurrency=4, rpm=None, tpm=None) is not a


def test_requests_are_paced_to_the_rpm_budget() -> None:
    limiter = Limiter(max_concurrency=50, rpm=600)  # 10 per second, burst 10

    async def go() -> float:
        started = time.monotonic()

        async def one() -> None:
            async with limiter.slot(1):
                pass

        await asyncio.gather(*(one() for _ in range(30)))
        return time.monotonic() - started

    elapsed = asyncio.run(go())
    assert 1.7 < elapsed < 3.5  # 10 at once, then 20 more at 10 per second


def peak_in_flight(limiter: Limiter, calls: int, *, succeed: bool = False) -> int:
    """Run ``calls`` short requests through ``limiter`` (reporting success when ``succeed``); return the peak."""
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with limiter.slot(1):
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.01)
            if succeed:
                limiter.record_success(1, 1, {})

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(calls)))

    asyncio.run(go())
    return peak


def test_window_bounds_requests_in_flight() -> None:
    limiter = Limiter(max_concurrency=3)
    assert peak_in_flight(limiter, 40) == 3 and limiter.in_flight == 0


def test_waiters_get_their_turn_in_arrival_order_and_cancelled_ones_give_it_back() -> None:
    limiter = Limiter(max_concurrency=1)
    order: list[int] = []

    async def one(i: int) -> None:
        async with limiter.slot(1):
            order.append(i)
            await asyncio.sleep(0.001)

    async def go() -> None:
        async with limiter.slot(1):
            tasks = [asyncio.create_task(one(i)) for i in range(5)]
            await asyncio.sleep(0.01)
            tasks[1].cancel()  # still waiting
        assert limiter.in_flight == 1  # the place went to task 0, which has not run yet
        tasks[0].cancel()  # granted a place it never used
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    assert order == [2, 3, 4] and limiter.in_flight == 0


def test_a_growing_window_lets_waiters_in() -> None:
    limiter = Limiter(max_concurrency=4)
    limiter.window = 1.0
    assert peak_in_flight(limiter, 30, succeed=True) == 4
    assert limiter.window == 4.0 and limiter.in_flight == 0


def test_dead_endpoint_parks_instead_of_spinning() -> None:
    sent = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        raise httpx.ConnectError("refused")

    limiter = Limiter(max_concurrency=4, breaker_threshold=10, breaker_cooldown=60)
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)

    def client_for(name: str) -> ChatClient:
        return ChatClient("http://down/v1", transport=httpx.MockTransport(refuse), retry=policy, limiter=limiter)

    calls = [Call("e", "m", ({"role": "user", "content": str(i)},)) for i in range(50)]
    with pytest.raises(
        EndpointParkedError,
        match=r"endpoint\(s\) e: endpoint parked after 10 failed attempts in a row; last: ConnectError.*rerun",
    ):
        run_calls(calls, client_for)
    assert sent < 20


OK_BODY = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}


def poison_server(poisoned: set[str], seen: list[str]) -> httpx.MockTransport:
    """Answer every request, except that a body whose prompt is in ``poisoned`` always gets HTTP 500."""

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)
        prompt = json.loads(request.content)["messages"][-1]["content"]
        seen.append(prompt)
        if prompt in poisoned:
            return httpx.Response(500, json={"error": {"message": f"cannot digest {prompt}"}})
        return httpx.Response(200, json=OK_BODY)

    return httpx.MockTransport(answer)


def test_requests_that_always_fail_fail_only_their_rows_and_do_not_park_the_endpoint() -> None:
    poisoned = {"p3", "p40", "p77"}
    seen: list[str] = []
    limiter = Limiter(max_concurrency=16, breaker_threshold=5, breaker_cooldown=60)
    policy = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)

    def client_for(name: str) -> ChatClient:
        return ChatClient("http://llm.test/v1", transport=poison_server(poisoned, seen), retry=policy, limiter=limiter)

    calls = [Call("e", "m", ({"role": "user", "content": f"p{i}"},)) for i in range(100)]
    results = run_calls(calls, client_for)  # 12 failed attempts, the last ones with nothing else in flight
    failed = {c.messages[0]["content"]: r for c, r in zip(calls, results, strict=True) if not r.ok}
    assert set(failed) == poisoned
    assert all(r.error_kind == "http_error" and r.error == f"HTTP 500: cannot digest {p}" for p, r in failed.items())
    assert all(seen.count(p) == 4 for p in poisoned)

    # A rerun sends only requests that fail, more of them than the threshold: one probe shows the endpoint works.
    poisoned |= {f"q{i}" for i in range(7)}
    seen.clear()
    rerun = [Call("e", "m", ({"role": "user", "content": p},)) for p in sorted(poisoned)]
    results = run_calls(rerun, client_for)
    assert all(r.error_kind == "http_error" for r in results)
    assert limiter.probes == 1 and seen.count("Say OK.") == 1


def test_an_endpoint_failing_every_request_is_parked_once_a_probe_fails_too() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "overloaded"}})

    limiter = Limiter(max_concurrency=4, breaker_threshold=6, breaker_cooldown=60)
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)

    def client_for(name: str) -> ChatClient:
        return ChatClient("http://llm.test/v1", transport=httpx.MockTransport(down), retry=policy, limiter=limiter)

    calls = [Call("e", "m", ({"role": "user", "content": str(i)},)) for i in range(40)]
    with pytest.raises(EndpointParkedError) as raised:
        run_calls(calls, client_for)
    assert (
        "endpoint(s) e: endpoint parked after 6 different requests failed in a row and a health probe to "
        "http://llm.test/v1/chat/completions (model m) failed too: HTTP 503: overloaded; last: HTTP 503: overloaded"
    ) in str(raised.value)
    assert limiter.probes == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_budget_stops_new_requests(concurrency: int) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # answers arrive while other calls wait to be sent
        usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
        return httpx.Response(
            200, json={"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}], "usage": usage}
        )

    def client_for(name: str) -> ChatClient:
        return ChatClient("http://x/v1", transport=httpx.MockTransport(answer), max_concurrency=concurrency)

    budget = Budget(Prices({("e", "m"): (1.0, 1.0)}), limit_usd=0.005)  # 0.002 USD a call
    calls = [Call("e", "m", ({"role": "user", "content": str(i)},)) for i in range(20)]
    results = run_calls(calls, client_for, budget=budget)
    kinds = [r.error_kind for r in results]
    paid = kinds.count(None)
    # Sending stops once the spend reaches the limit (3 calls); calls already in flight then still cost.
    assert 3 <= paid <= 3 + concurrency - 1 if concurrency > 1 else paid == 3
    assert kinds.count("budget_exhausted") == 20 - paid
    assert budget.spent_usd == pytest.approx(0.002 * paid)
    assert all(r.error == "budget of 0.005 USD spent" for r in results if r.error_kind)


def test_progress_is_logged() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})

    lines: list[str] = []
    calls = [Call("e", "m", ({"role": "user", "content": str(i)},)) for i in range(8)]
    run_calls(
        calls,
        lambda name: ChatClient("http://x/v1", transport=httpx.MockTransport(slow), max_concurrency=1),
        log=lines.append,
        interval=0.1,
    )
    assert lines and all("/8 calls done" in line and "ETA" in line for line in lines)


def test_429_with_retry_after_is_retried_past_max_attempts() -> None:
    answers = iter(
        [httpx.Response(429, headers={"retry-after": "0.01"})] * 6
        + [httpx.Response(200, json={"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})]
    )

    async def go() -> None:
        async with ChatClient(
            "http://x/v1",
            transport=httpx.MockTransport(lambda r: next(answers)),
            retry=RetryPolicy(max_attempts=2),
        ) as client:
            result = await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}]))
            assert result.ok and result.attempts == 7

    asyncio.run(go())
