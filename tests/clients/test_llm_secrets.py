"""A server that echoes the request headers, in a 200 answer or in an error, never gets a key into a result or
the request cache: every form of it (verbatim, lower-cased, upper-cased, straddling a cut) is masked first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pref_assets.clients.cache import RequestCache
from pref_assets.clients.llm import ChatClient, ChatRequest, ChatResult
from pref_assets.clients.retry import RetryPolicy
from pref_assets.core.secrets import Secrets

KEY = "sk-SENTINEL-1-4b7d0e92a6c3f815"
OTHER = "sk-OTHER-ENDPOINT-93c1d7e0a4b2"
ONCE = RetryPolicy(max_attempts=1)


def _forms(text: str) -> list[str]:
    """Return which forms of the keys ``text`` holds: whole, any case, or a prefix of 10 characters."""
    found = []
    for key in (KEY, OTHER):
        found += [form for form in (key, key.lower(), key.upper(), key[:10].lower()) if form.lower() in text.lower()]
    return found


def _listing(request: httpx.Request) -> str:
    return "\n".join(f"{k}: {v}" for k, v in request.headers.items())


def _echo_answer(request: httpx.Request) -> httpx.Response:
    listing = f"{_listing(request)}\nx-forwarded-auth: Bearer {OTHER}"
    text = f"An answer.\nRequest headers:\n{listing}\nNormalised:\n{listing.lower()}\nUPPER:\n{listing.upper()}"
    choice = {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 9}})


def _straddling(request: httpx.Request, cut: int) -> str:
    """Return a message in which the bearer key starts 12 characters before ``cut``."""
    key = request.headers["authorization"].removeprefix("Bearer ")
    return "rejected credential ".ljust(cut - 12, ".") + key + f" ({_listing(request).lower()})"


def _complete(handler: Callable[[httpx.Request], httpx.Response], cache: Path | None = None) -> ChatResult:
    async def go() -> ChatResult:
        async with ChatClient(
            "http://llm.test/v1",
            api_key=KEY,
            transport=httpx.MockTransport(handler),
            retry=ONCE,
            cache=RequestCache(cache) if cache else None,
            secrets=Secrets.of(OTHER),
        ) as client:
            return await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}]))

    return asyncio.run(go())


def test_an_answer_echoing_the_headers_is_stored_and_cached_without_any_key(tmp_path: Path) -> None:
    result = _complete(_echo_answer, tmp_path / "cache.sqlite")
    assert result.ok and "Request headers:" in str(result.text) and "Bearer ***" in str(result.text)
    assert _forms(str(result.text)) == []
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Bearer ***" in stored and _forms(stored.decode("latin-1")) == []


@pytest.mark.parametrize(
    "reply",
    [
        # an HTTP error whose JSON message is cut at 300 characters
        lambda r: httpx.Response(401, json={"error": {"message": _straddling(r, 300)}}),
        # an HTTP error that is not JSON: its text is cut at 300 characters
        lambda r: httpx.Response(502, text=_straddling(r, 300)),
        # a 200 error object, its message cut at 300 characters
        lambda r: httpx.Response(200, json={"error": {"message": _straddling(r, 300), "code": 400}}),
        # a 200 body that is not JSON: quoted, cut at 200 characters
        lambda r: httpx.Response(200, text=_straddling(r, 200)),
        # a refusal, cut at 300 characters
        lambda r: httpx.Response(200, json={"choices": [{"message": {"refusal": _straddling(r, 300)}}]}),
    ],
    ids=["http-json", "http-text", "200-error-object", "200-not-json", "refusal"],
)
def test_a_key_straddling_the_cut_of_an_error_leaves_no_prefix(
    reply: Callable[[httpx.Request], httpx.Response],
) -> None:
    result = _complete(reply)
    assert not result.ok and "rejected credential" in str(result.error)
    assert _forms(str(result.error)) == [], result.error


def test_a_transport_error_quoting_the_key_is_masked() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"illegal header line: b'authorization: bearer {KEY.lower()}'")

    result = _complete(broken)
    assert not result.ok and result.error_kind == "connection_error" and _forms(str(result.error)) == []


def _cached_run(tmp_path: Path, api_key: str | None, sent: list[str]) -> ChatResult:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("authorization", ""))
        content = "answer for " + (api_key or "nobody")[:5]
        return httpx.Response(200, json={"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})

    async def go() -> ChatResult:
        async with ChatClient(
            "http://llm.test/v1",
            api_key=api_key,
            transport=httpx.MockTransport(handler),
            retry=ONCE,
            cache=RequestCache(tmp_path / "cache.sqlite"),
        ) as client:
            return await client.complete(ChatRequest("m", [{"role": "user", "content": "q"}]))

    return asyncio.run(go())


def test_answers_cached_under_one_key_are_never_read_with_another(tmp_path: Path) -> None:
    sent: list[str] = []
    first = _cached_run(tmp_path, KEY, sent)
    wrong = _cached_run(tmp_path, "sk-WRONG-key-0000000000", sent)
    again = _cached_run(tmp_path, KEY, sent)
    keyless = _cached_run(tmp_path, None, sent)
    keyless_again = _cached_run(tmp_path, None, sent)
    assert not first.cached and not wrong.cached and again.cached and again.text == first.text
    assert not keyless.cached and keyless_again.cached
    assert len(sent) == 3 and json.dumps(sent).count("WRONG") == 1
