from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from pref_assets.clients.llm import ChatClient, ChatRequest, ChatResult
from pref_assets.clients.retry import RetryPolicy, parse_retry_after

FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


def _completion(text: str = "hi", finish: str = "stop") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        },
    )


def _run(handler: Callable[[httpx.Request], httpx.Response], **kwargs: object) -> tuple[ChatResult, list]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def go() -> ChatResult:
        async with ChatClient(
            "http://llm.test/v1",
            transport=httpx.MockTransport(record),
            retry=kwargs.pop("retry", FAST),
            **kwargs,
        ) as client:
            return await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}], {"max_tokens": 5}))

    return asyncio.run(go()), seen


def test_success_reads_text_usage_and_finish_reason() -> None:
    result, seen = _run(lambda r: _completion("hello", "length"), api_key="sk-test")
    assert result.ok and result.text == "hello" and result.finish_reason == "length"
    assert (result.prompt_tokens, result.completion_tokens, result.attempts) == (7, 3, 1)
    assert seen[0].url == "http://llm.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(seen[0].content) == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "max_tokens": 5,
    }


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_retryable_statuses_are_retried_until_success(status: int) -> None:
    answers = iter([httpx.Response(status, json={"error": {"message": "busy"}}), _completion()])
    result, seen = _run(lambda r: next(answers))
    assert result.ok and result.attempts == 2 and len(seen) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried_and_keep_the_message(status: int) -> None:
    result, seen = _run(lambda r: httpx.Response(status, json={"error": {"message": "context too long"}}))
    assert not result.ok and len(seen) == 1
    assert result.error_kind == "http_error" and result.error == f"HTTP {status}: context too long"


def test_gives_up_after_max_attempts() -> None:
    result, seen = _run(lambda r: httpx.Response(503, text="down"))
    assert not result.ok and result.attempts == 3 and len(seen) == 3
    assert result.error == "HTTP 503: down"


def test_connection_errors_and_timeouts_are_retried() -> None:
    errors = iter([httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])

    def handler(request: httpx.Request) -> httpx.Response:
        error = next(errors, None)
        if error:
            raise error
        return _completion()

    result, _ = _run(handler)
    assert result.ok and result.attempts == 3


def test_timeout_is_reported_as_such() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    result, _ = _run(handler)
    assert result.error_kind == "timeout"


@pytest.mark.parametrize(
    "body", [{"choices": []}, {"nope": 1}, {"choices": [{"message": {"content": None}}]}, "not json"]
)
def test_unreadable_completions_are_errors(body: object) -> None:
    response = httpx.Response(200, text=body) if isinstance(body, str) else httpx.Response(200, json=body)
    result, _ = _run(lambda r: response)
    assert not result.ok and result.error_kind == "bad_response"


def test_concurrency_is_bounded() -> None:
    in_flight, peak = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return _completion()

    async def go() -> list[ChatResult]:
        async with ChatClient("http://x/v1", transport=httpx.MockTransport(handler), max_concurrency=3) as client:
            reqs = [ChatRequest("m", [{"role": "user", "content": str(i)}]) for i in range(20)]
            return await client.complete_many(reqs)

    results = asyncio.run(go())
    assert len(results) == 20 and all(r.ok for r in results)
    assert peak == 3


def test_retry_after_is_obeyed_and_capped() -> None:
    policy = RetryPolicy(retry_after_cap=5)
    assert policy.delay(1, 2.5) == 2.5
    assert policy.delay(1, 100) == 5
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10])
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8)
    ceiling = min(8, 0.5 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
