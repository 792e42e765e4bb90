from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pref_assets.clients.llm import ChatClient, ChatRequest, ChatResult
from pref_assets.clients.retry import RetryPolicy, parse_duration, parse_retry_after, retry_after_seconds
from pref_assets.clients.runner import run_calls
from pref_assets.core.calls import Call

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


def test_an_answer_without_text_keeps_its_finish_reason_usage_and_why() -> None:
    message = {"content": None, "reasoning_content": "thinking..."}
    body = {
        "choices": [{"message": message, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 384},
    }
    result, seen = _run(lambda r: httpx.Response(200, json=body))
    assert not result.ok and result.error_kind == "bad_response" and len(seen) == 1
    assert result.finish_reason == "length" and (result.prompt_tokens, result.completion_tokens) == (30, 384)
    assert "finish_reason length" in str(result.error) and "only reasoning" in str(result.error)
    refusal = {
        "choices": [{"message": {"content": None, "refusal": "I can't help with that."}, "finish_reason": "stop"}]
    }
    result, _ = _run(lambda r: httpx.Response(200, json=refusal))
    assert not result.ok and "refused: I can't help with that." in str(result.error)


def test_content_parts_and_odd_usage_are_read_not_raised() -> None:
    parts = [{"type": "text", "text": "Par"}, {"type": "text", "text": "is"}, {"type": "image_url", "image_url": {}}]
    body = {
        "choices": [{"message": {"content": parts}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": "12.0", "completion_tokens": None},
    }
    result, _ = _run(lambda r: httpx.Response(200, json=body))
    assert result.ok and result.text == "Paris" and (result.prompt_tokens, result.completion_tokens) == (12, 0)
    body["usage"] = [1]
    result, _ = _run(lambda r: httpx.Response(200, json=body))
    assert result.ok and (result.prompt_tokens, result.completion_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, {"error": {"message": "model overloaded"}}, "server error: model overloaded"),
        (400, {"error": {"message": None, "code": "bad_model"}}, '"code": "bad_model"'),
        (400, {"error": "plain text"}, "plain text"),
        (422, {"detail": [{"msg": "field required"}]}, "field required"),
        (400, {"object": "error", "message": "max_tokens too large"}, "max_tokens too large"),
        (400, "<html>Bad Request</html>", "<html>Bad Request</html>"),
    ],
)
def test_error_bodies_keep_the_servers_message(status: int, body: object, message: str) -> None:
    response = httpx.Response(status, text=body) if isinstance(body, str) else httpx.Response(status, json=body)
    result, _ = _run(lambda r: response, retry=RetryPolicy(max_attempts=1))
    assert not result.ok and message in str(result.error)


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


def test_retry_after_is_read_in_every_form_servers_send() -> None:
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now=now) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now=now) == 0
    assert parse_retry_after("-3") == 0
    for unreadable in ("nan", "inf", "soon", "Wed, 21 Oct 2015 07:30:00"):
        assert parse_retry_after(unreadable) is None
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "9"}) == 9
    exhausted = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}
    assert retry_after_seconds(exhausted | {"x-ratelimit-reset-tokens": "6ms"}) == 90
    assert retry_after_seconds({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1m"}) is None
    assert retry_after_seconds({}) is None
    assert [parse_duration(v) for v in ("6ms", "1.5s", "2m", "1h2m3s", "7", "7x", "")] == [
        0.006, 1.5, 120, 3723, 7, None, None,
    ]  # fmt: skip


def test_429s_back_off_exponentially_when_the_server_gives_no_wait() -> None:
    slept: list[float] = []
    answers = iter([httpx.Response(429)] * 5 + [_completion()])

    async def go() -> ChatResult:
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            await real_sleep(0)

        asyncio.sleep, saved = sleep, asyncio.sleep
        try:
            policy = RetryPolicy(base_delay=1, max_delay=100)
            async with ChatClient(
                "http://x/v1", transport=httpx.MockTransport(lambda r: next(answers)), retry=policy
            ) as client:
                return await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}]))
        finally:
            asyncio.sleep = saved

    assert asyncio.run(go()).attempts == 6
    waits = [s for s in slept if s > 0]
    assert len(waits) == 5
    assert all(2 ** (i - 1) <= w <= 2**i for i, w in enumerate(waits))


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10])
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8)
    ceiling = min(8, 0.5 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)


def test_a_server_that_rejects_the_structured_output_shape_is_asked_in_the_prompt_only() -> None:
    schema = {"type": "json_object", "schema": {"type": "object"}}
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "response_format" in body:
            return httpx.Response(400, json={"error": {"message": "Unrecognized request argument: response_format"}})
        return _completion('{"answer_1": {"rating": 4}}')

    async def go() -> tuple[list[ChatResult], ChatClient]:
        async with ChatClient("http://x/v1", transport=httpx.MockTransport(handler), retry=FAST) as client:
            requests = [ChatRequest("m", [{"role": "user", "content": str(i)}], {}, schema) for i in range(3)]
            return await client.complete_many(requests), client

    results, client = asyncio.run(go())
    assert all(r.ok and r.attempts == 1 for r in results)
    assert "response_format" in client.dropped["response_format"]
    assert sum("response_format" in b for b in bodies) >= 1 and len(bodies) <= 6
    assert "response_format" not in bodies[-1]


def test_a_bad_request_about_something_else_is_not_resent_without_the_format() -> None:
    schema = {"type": "json_object", "schema": {"type": "object"}}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": {"message": "max_tokens is too large"}})

    async def go() -> ChatResult:
        async with ChatClient("http://x/v1", transport=httpx.MockTransport(handler), retry=FAST) as client:
            return await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}], {}, schema))

    result = asyncio.run(go())
    assert not result.ok and "max_tokens is too large" in str(result.error) and len(seen) == 1


def test_text_that_utf8_cannot_carry_is_replaced_not_retried() -> None:
    half_emoji = b'{"choices": [{"message": {"content": "Sure! \\ud83d"}, "finish_reason": "stop"}]}'
    result, seen = _run(lambda r: httpx.Response(200, content=half_emoji))
    assert result.ok and result.text == "Sure! \ufffd" and len(seen) == 1
    result.text.encode("utf-8")
    cut = b'{"choices": [{"message": {"content": "caf\xc3"}, "finish_reason": "length"}]}'
    result, seen = _run(lambda r: httpx.Response(200, content=cut))
    assert result.ok and result.text == "caf\ufffd" and len(seen) == 1
    error = b'{"error": {"message": "bad \\udc00 input"}}'
    result, _ = _run(lambda r: httpx.Response(400, content=error))
    assert not result.ok and "bad \ufffd input" in str(result.error)


@pytest.mark.parametrize(("code", "attempts"), [(404, 1), (400, 1), (429, 3), (500, 3), (None, 3)])
def test_an_error_object_sent_with_200_is_retried_only_when_its_code_allows(code: int | None, attempts: int) -> None:
    body = {"object": "error", "message": "The model `m` does not exist.", "type": "NotFoundError"}
    body |= {} if code is None else {"code": code}
    result, seen = _run(lambda r: httpx.Response(200, json=body))
    assert not result.ok and result.error_kind == "bad_response" and len(seen) == attempts
    assert "does not exist" in str(result.error)


def test_the_api_key_is_trimmed_and_never_echoed_into_errors() -> None:
    key = "sk-test-1234567890"

    def echo(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"error": {"message": f"invalid token {token}"}})

    result, seen = _run(echo, api_key=key + "\n")
    assert seen[0].headers["authorization"] == f"Bearer {key}"
    assert not result.ok and key not in str(result.error) and "invalid token ***" in str(result.error)


def test_a_redirect_without_a_body_names_where_it_points() -> None:
    response = httpx.Response(308, headers={"location": "/api/v1/chat/completions"})
    result, _ = _run(lambda r: response)
    assert not result.ok and "redirected to /api/v1/chat/completions" in str(result.error)


def test_a_server_that_refuses_seed_gets_requests_without_it_and_the_step_log_says_so() -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "seed" in body:
            return httpx.Response(400, json={"error": {"message": "Unsupported parameter: 'seed'"}})
        return _completion()

    lines: list[str] = []
    calls = [Call("e", "m", ({"role": "user", "content": "q"},), (("seed", 7), ("temperature", 0.5)))]
    [result] = run_calls(
        calls, lambda _: ChatClient("http://x/v1", transport=httpx.MockTransport(handler)), log=lines.append
    )
    assert result.ok and result.attempts == 1
    assert [("seed" in b, b["temperature"]) for b in bodies] == [(True, 0.5), (False, 0.5)]
    assert lines == [
        "endpoint e rejected the request field seed (Unsupported parameter: 'seed'); its requests were sent without it."
    ]


def test_an_answer_over_max_response_bytes_fails_its_row_once_and_is_not_read_to_the_end() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(10_000):  # 640 MB if read to the end
            pulled.append(i)
            yield b"x" * 65536

    result, seen = _run(lambda r: httpx.Response(200, content=endless()), max_response_bytes=1 << 20)
    assert result.error_kind == "response_too_large" and len(seen) == 1 and result.attempts == 1
    assert result.error == "the response body is larger than max_response_bytes (1048576 bytes); reading stopped"
    assert len(pulled) <= 17
    result, _ = _run(lambda r: _completion("x" * 2000), max_response_bytes=1024)
    assert result.error_kind == "response_too_large"


def test_a_streamed_answer_is_joined_from_its_events() -> None:
    events = [
        {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": None}]},
        {"choices": [{"delta": {}, "finish_reason": "length"}]},
    ]
    stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ": ping\n\ndata: [DONE]\n\n"
    result, seen = _run(lambda r: httpx.Response(200, text=stream), stream=True)
    assert result.ok and result.text == "Hello" and result.finish_reason == "length"
    assert (result.prompt_tokens, result.completion_tokens) == (0, 2)
    assert json.loads(seen[0].content)["stream"] is True
