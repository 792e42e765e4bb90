from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from pref_assets.clients.cache import RequestCache, request_key
from pref_assets.clients.llm import ChatClient, ChatRequest, ChatResult
from pref_assets.clients.retry import RetryPolicy


def test_key_depends_on_endpoint_and_every_part_of_the_body() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "temperature": 0.2}
    key = request_key("http://a/v1", body)
    assert key == request_key("http://a/v1", dict(reversed(list(body.items()))))
    assert key != request_key("http://b/v1", body)
    assert key != request_key("http://a/v1", body | {"temperature": 0.3})
    assert key != request_key("http://a/v1", body | {"model": "n"})
    assert key != request_key("http://a/v1", body | {"messages": [{"role": "user", "content": "Q"}]})


def test_put_get_count_clear(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c" / "requests.sqlite")
    cache.put("k", "e", "m", {"text": "hi"})
    cache.put("k", "e", "m", {"text": "second write ignored"})
    assert cache.get("k") == {"text": "hi"} and cache.get("other") is None
    assert cache.count() == 1
    assert cache.clear() == 1 and cache.count() == 0
    cache.close()


def test_cache_is_shared_between_connections(tmp_path: Path) -> None:
    first, second = RequestCache(tmp_path / "r.sqlite"), RequestCache(tmp_path / "r.sqlite")
    first.put("k", "e", "m", {"text": "x"})
    assert second.get("k") == {"text": "x"}
    first.close()
    second.close()


def _complete_twice(tmp_path: Path, responses: list[httpx.Response]) -> tuple[list[ChatResult], int]:
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return responses[min(sent, len(responses)) - 1]

    async def go() -> list[ChatResult]:
        out = []
        for _ in range(2):
            async with ChatClient(
                "http://x/v1",
                transport=httpx.MockTransport(handler),
                retry=RetryPolicy(max_attempts=1),
                cache=RequestCache(tmp_path / "r.sqlite"),
            ) as c:
                out.append(await c.complete(ChatRequest("m", [{"role": "user", "content": "q"}])))
        return out

    return asyncio.run(go()), sent


def test_completed_response_is_not_paid_twice(tmp_path: Path) -> None:
    ok = httpx.Response(
        200,
        json={
            "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        },
    )
    (first, second), sent = _complete_twice(tmp_path, [ok])
    assert sent == 1
    assert not first.cached and second.cached
    assert (second.text, second.finish_reason, second.prompt_tokens, second.attempts) == ("hi", "stop", 3, 0)


def test_failures_are_not_cached(tmp_path: Path) -> None:
    ok = httpx.Response(200, json={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})
    (first, second), sent = _complete_twice(tmp_path, [httpx.Response(500, text="down"), ok])
    assert sent == 2
    assert not first.ok and second.ok and not second.cached


def test_a_namespace_changes_the_key_and_no_namespace_keeps_the_old_one() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    plain = request_key("http://a/v1", body)
    assert plain == request_key("http://a/v1", body, "")
    assert plain != request_key("http://a/v1", body, "0123456789abcdef") != request_key("http://a/v1", body, "f" * 16)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_cache_file_and_the_folders_it_creates_are_private(tmp_path: Path) -> None:
    path = tmp_path / "store" / "cache" / "requests.sqlite"
    before = _mode(tmp_path)
    cache = RequestCache(path)
    cache.put("k", "e", "m", {"text": "x"})
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    assert all(_mode(p) == 0o600 for p in path.parent.iterdir()), [oct(_mode(p)) for p in path.parent.iterdir()]
    cache.close()
    assert _mode(tmp_path) == before  # a folder that existed keeps its mode


def test_an_existing_cache_file_is_made_private_and_private_false_leaves_modes(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    RequestCache(path, private=False).close()
    path.chmod(0o644)
    RequestCache(path, private=False).close()
    assert _mode(path) == 0o644
    RequestCache(path).close()
    assert _mode(path) == 0o600
