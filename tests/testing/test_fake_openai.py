"""Tests of the fake OpenAI-compatible server, over real HTTP to a subprocess."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pref_assets.testing.fake_openai import FakeServer, SchemaFaker, run_fake_openai

RATING = {"enum": [1, 2, 3, 4, 5, "N/A"]}
ITEM = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string", "maxLength": 40},
        "error_kind": {"enum": ["none", "incorrect", "incomplete"]},
        "rating": RATING,
    },
    "required": ["rationale", "error_kind", "rating"],
}
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"answer_1": ITEM, "answer_2": ITEM, "answer_3": ITEM},
    "required": ["answer_1", "answer_2", "answer_3"],
}
MESSAGES = [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "Rate these."}]


def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Check ``value`` against the schema subset these tests use."""
    if "const" in schema:
        return value == schema["const"]
    if "enum" in schema:
        return value in schema["enum"]
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    checks = {
        "object": lambda: (
            isinstance(value, dict)
            and all(k in value for k in schema.get("required", []))
            and all(conforms(value[k], s) for k, s in schema.get("properties", {}).items() if k in value)
        ),
        "array": lambda: (
            isinstance(value, list)
            and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
            and all(conforms(v, schema["items"]) for v in value)
        ),
        "string": lambda: isinstance(value, str) and len(value) <= schema.get("maxLength", len(value)),
        "integer": lambda: (
            isinstance(value, int) and schema.get("minimum", value) <= value <= schema.get("maximum", value)
        ),
        "boolean": lambda: isinstance(value, bool),
    }
    return bool(checks[schema["type"]]())


def chat(server: FakeServer, timeout: float = 10, **body: Any) -> httpx.Response:
    """POST a chat-completions body to ``server``."""
    url = f"{server.base_url}/chat/completions"
    return server.client.post(url, json={"model": "judge", **body}, timeout=timeout)


def content(response: httpx.Response) -> str:
    """Return the answer text of a 200 response."""
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    """A fake server with default knobs, shared by the module."""
    with run_fake_openai() as running:
        yield running


@pytest.fixture()
def fresh(server: FakeServer) -> FakeServer:
    """The shared server with zeroed counters."""
    server.reset()
    return server


def test_models_and_completion_shape(server: FakeServer) -> None:
    models = server.client.get(f"{server.base_url}/models").json()
    assert models == {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
    answer = chat(server, messages=MESSAGES).json()
    assert answer["object"] == "chat.completion" and answer["model"] == "judge"
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert 20 <= len(choice["message"]["content"].split()) <= 60
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_openai_json_schema_form(server: FakeServer) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "judge", "schema": JUDGE_SCHEMA}}
    document = json.loads(content(chat(server, messages=MESSAGES, response_format=fmt)))
    assert conforms(document, JUDGE_SCHEMA)


def test_llama_cpp_schema_form_with_content_parts(server: FakeServer) -> None:
    texts = [{"type": "text", "text": "Rate"}, {"type": "text", "text": "these."}]
    parts = [{"role": "user", "content": texts}]
    fmt = {"type": "json_object", "schema": JUDGE_SCHEMA}
    document = json.loads(content(chat(server, messages=parts, response_format=fmt)))
    assert conforms(document, JUDGE_SCHEMA)


def test_schema_faker_covers_the_keywords() -> None:
    schema = {
        "type": "object",
        "$defs": {"Level": {"enum": ["low", "high"]}},
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 5},
                "minItems": 2,
                "maxItems": 3,
            },
            "score": {"type": "integer", "minimum": 3, "maximum": 7},
            "ok": {"type": "boolean"},
            "kind": {"const": "judge"},
            "level": {"$ref": "#/$defs/Level"},
            "either": {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 100}, {"type": "string"}]},
        },
        "required": ["tags", "score"],
    }
    resolved = {**schema, "properties": {**schema["properties"], "level": {"enum": ["low", "high"]}}}
    for seed in range(20):
        value = SchemaFaker(schema, random.Random(seed)).value(schema)
        assert conforms(value, resolved)
        assert value["either"] == 100


def test_same_body_gives_same_answer_and_counts_repeats(fresh: FakeServer) -> None:
    fmt = {"type": "json_object", "schema": JUDGE_SCHEMA}
    first, second = (content(chat(fresh, messages=MESSAGES, response_format=fmt)) for _ in range(2))
    other = content(chat(fresh, messages=[{"role": "user", "content": "Other."}], response_format=fmt))
    assert first == second != other
    stats = fresh.stats()
    assert stats["requests"] == 3 and stats["distinct_bodies"] == 2
    assert stats["repeated_after_success"] == 1 and stats["by_model"] == {"judge": 3}


def test_max_tokens_truncates_with_finish_reason_length(server: FakeServer) -> None:
    answer = chat(server, messages=MESSAGES, max_tokens=8).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] <= 8
    assert chat(server, messages=MESSAGES, max_tokens=1000).json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"model": "m"}', b'{"messages": [], "model": "m"}', b'{"messages": [{"content": 3}]}'],
)
def test_bad_body_gives_400(server: FakeServer, body: bytes) -> None:
    response = server.client.post(f"{server.base_url}/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_stream_is_refused(server: FakeServer) -> None:
    assert chat(server, messages=MESSAGES, stream=True).status_code == 400


def test_reset_zeroes_counters(fresh: FakeServer) -> None:
    chat(fresh, messages=MESSAGES)
    assert fresh.stats()["requests"] == 1
    fresh.reset()
    stats = fresh.stats()
    assert stats["requests"] == 0 and stats["by_status"] == {} and stats["distinct_bodies"] == 0


def test_rpm_cap_answers_429_with_retry_after() -> None:
    with run_fake_openai(rpm=60, burst=2) as server:
        statuses = [chat(server, messages=MESSAGES) for _ in range(5)]
        assert [r.status_code for r in statuses] == [200, 200, 429, 429, 429]
        limited = statuses[2]
        assert 0 < float(limited.headers["retry-after"]) <= 1.0
        assert limited.headers["x-ratelimit-limit-requests"] == "60"
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert server.stats()["by_status"] == {"200": 2, "429": 3}


def test_fail_5xx_gives_server_errors() -> None:
    with run_fake_openai(fail_5xx=1.0) as server:
        codes = {chat(server, messages=[{"role": "user", "content": str(i)}]).status_code for i in range(10)}
        assert codes <= {500, 503} and codes


def test_malformed_breaks_schema_answers_only() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "judge", "schema": JUDGE_SCHEMA}}
    with run_fake_openai(malformed=1.0) as server:
        text = content(chat(server, messages=MESSAGES, response_format=fmt))
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        with pytest.raises(json.JSONDecodeError):
            json.loads(text[text.find("{") : text.rfind("}") + 1])
        assert chat(server, messages=MESSAGES).json()["choices"][0]["finish_reason"] == "stop"


def test_fail_timeout_makes_the_client_time_out() -> None:
    with run_fake_openai(fail_timeout=1.0) as server:
        with pytest.raises(httpx.ReadTimeout):
            chat(server, messages=MESSAGES, timeout=0.3)
        assert _eventually_disconnected(server)


def test_api_key_is_enforced() -> None:
    with run_fake_openai(api_key="sekret") as server:
        assert chat(server, messages=MESSAGES).status_code == 401
        headers = {"Authorization": "Bearer sekret"}
        url = f"{server.base_url}/chat/completions"
        assert server.client.post(url, json={"messages": MESSAGES}, headers=headers).status_code == 200


def _eventually_disconnected(server: FakeServer) -> bool:
    for _ in range(50):
        if server.stats()["by_status"].get("disconnected") == 1:
            return True
        time.sleep(0.02)
    return False


async def _concurrent(server: FakeServer, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        calls = [client.post("/chat/completions", json={"messages": MESSAGES}) for _ in range(n)]
        return [r.status_code for r in await asyncio.gather(*calls)]


def test_max_in_flight_and_max_concurrency() -> None:
    with run_fake_openai(latency=0.3, max_concurrency=8) as server:
        assert asyncio.run(_concurrent(server, 8)) == [200] * 8
        assert server.stats()["max_in_flight"] == 8
        server.reset()
        codes = asyncio.run(_concurrent(server, 12))
        assert codes.count(200) == 8 and codes.count(429) == 4


def test_dead_server_reports_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="exited"), run_fake_openai(host="256.1.1.1"):
        pass
