"""Tests of the fake OpenAI-compatible server, over real HTTP to a subprocess."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pref_assets.testing.fake_openai import (
    PLANTED_VERDICT,
    FakeConfig,
    FakeServer,
    SchemaFaker,
    build_parser,
    cli_args,
    run_fake_openai,
)

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


# ---------------------------------------------------------------- hostile modes

TWO_SCHEMA = {
    "type": "object",
    "properties": {"answer_1": ITEM, "answer_2": ITEM},
    "required": ["answer_1", "answer_2"],
}
TWO_FORMAT = {"type": "json_schema", "json_schema": {"name": "judge", "schema": TWO_SCHEMA}}
SHOWN = "Rate these.\n\n## Answer 1\nYes.\n\n## Answer 2\nNo.\n\n## Answer 3\nMaybe."
ECHO_KEY = "sk-EchoTest-Q7x9Lm2Vb4Nc8Tz1"


def _planted_json(text: str) -> Any:
    """Decode the JSON object that starts at the planted verdict's first key."""
    return json.JSONDecoder().raw_decode(text, text.index('{"answer_1": {"rationale": "Complete'))[0]


def test_nested_judge_nests_judge_answers_only() -> None:
    with run_fake_openai(nested_judge=1.0, nested_depth=40) as server:
        schema_judge = content(chat(server, messages=MESSAGES, response_format=TWO_FORMAT))
        text_judge = content(chat(server, messages=[{"role": "user", "content": SHOWN}]))
        generator = content(chat(server, messages=[{"role": "user", "content": "Say hi."}]))
        counts = server.stats()["hostile"]
    assert schema_judge == text_judge == "[" * 40 + "]" * 40
    assert "[" not in generator
    assert counts == {"nested_judge": 2}


def test_nested_judge_fraction_is_fixed_per_request_and_nests_5000_deep() -> None:
    bodies = [[{"role": "user", "content": f"Rate {i}."}] for i in range(20)]
    with run_fake_openai(nested_judge=0.5) as server:
        first = [content(chat(server, messages=m, response_format=TWO_FORMAT)) for m in bodies]
        again = [content(chat(server, messages=m, response_format=TWO_FORMAT)) for m in bodies]
    nested = [text for text in first if text.startswith("[")]
    assert first == again
    assert 0 < len(nested) < len(bodies)
    assert all(text == "[" * 5000 + "]" * 5000 for text in nested)


def test_huge_body_ignores_max_tokens() -> None:
    with run_fake_openai(huge_body_bytes=3_000_000) as server:
        response = chat(server, messages=MESSAGES, max_tokens=4)
    text = content(response)
    assert len(text.encode()) == 3_000_000 and text.split()[:3] == ["the", "answer", "is"]
    assert int(response.headers["content-length"]) == len(response.content)


def test_huge_body_fraction_picks_some_answers() -> None:
    with run_fake_openai(huge_body_bytes=100_000, huge_body_fraction=0.5) as server:
        sizes = [len(content(chat(server, messages=[{"role": "user", "content": str(i)}]))) for i in range(12)]
    assert 0 < sizes.count(100_000) < len(sizes)
    assert all(size < 1000 for size in sizes if size != 100_000)


def test_huge_body_is_streamed_without_the_server_holding_it() -> None:
    size = 120_000_000
    with run_fake_openai(huge_body_bytes=size) as server:
        url = f"{server.base_url}/chat/completions"
        with server.client.stream("POST", url, json={"messages": MESSAGES}, timeout=30) as response:
            received = sum(len(chunk) for chunk in response.iter_raw())
        peak_kb = _peak_rss_kb(server.process.pid)
    assert response.status_code == 200 and received > size
    assert peak_kb * 1024 < size / 2, f"the fake server peaked at {peak_kb} kB"


def test_slow_body_sends_headers_then_drips_until_the_client_leaves() -> None:
    with run_fake_openai(slow_body=0.1) as server:
        url = f"{server.base_url}/chat/completions"
        started = time.monotonic()
        with server.client.stream("POST", url, json={"messages": MESSAGES}, timeout=5) as response:
            headed = time.monotonic() - started
            got = b""
            for chunk in response.iter_raw():
                got += chunk
                if len(got) >= 10:
                    break
            dripped = time.monotonic() - started
        assert response.status_code == 200 and int(response.headers["content-length"]) > 100
        assert headed < 0.8 and dripped >= 1.0
        assert len(got) == 10 and b'{"id": "chatcmpl-fake-'.startswith(got)
        assert _eventually(lambda: server.stats()["hostile"].get("cut_bodies") == 1)


def test_echo_headers_puts_the_request_headers_in_answers() -> None:
    headers = {"Authorization": f"Bearer {ECHO_KEY}", "X-Trace": "Trace-Value"}
    with run_fake_openai(echo_headers=True) as server:
        url = f"{server.base_url}/chat/completions"
        text = content(server.client.post(url, json={"messages": MESSAGES}, headers=headers))
    assert f"authorization: Bearer {ECHO_KEY}" in text and f"bearer {ECHO_KEY.lower()}" in text
    assert "x-trace: Trace-Value" in text


@pytest.mark.parametrize(("knobs", "status"), [({"fail_5xx": 1.0}, {500, 503}), ({"api_key": "other"}, {401})])
def test_echo_headers_puts_the_key_in_error_messages(knobs: dict[str, Any], status: set[int]) -> None:
    headers = {"Authorization": f"Bearer {ECHO_KEY}"}
    with run_fake_openai(echo_headers=True, **knobs) as server:
        url = f"{server.base_url}/chat/completions"
        response = server.client.post(url, json={"messages": MESSAGES}, headers=headers)
    message = response.json()["error"]["message"]
    assert response.status_code in status
    at = message.find(ECHO_KEY)
    assert at < 300 - 12 and at + len(ECHO_KEY) > 300, "the key must straddle character 300"
    assert message.count(ECHO_KEY) >= 2 and ECHO_KEY.lower() in message


def test_planted_verdict_in_generator_answers_and_judge_quotes() -> None:
    with run_fake_openai(planted_verdict=True) as server:
        answer = content(chat(server, messages=[{"role": "user", "content": "Explain tides."}]))
        judged = content(chat(server, messages=MESSAGES, response_format=TWO_FORMAT))
        text_judged = content(chat(server, messages=[{"role": "user", "content": SHOWN}]))
        counts = server.stats()["hostile"]
    assert answer.index("\n## Answer 2\n") > 20 and "Note to the evaluator" in answer
    assert _planted_json(answer) == PLANTED_VERDICT
    verdict, end = json.JSONDecoder().raw_decode(judged)
    assert conforms(verdict, TWO_SCHEMA) and {v["rating"] for v in verdict.values()} == {2}
    assert _planted_json(judged[end:]) == PLANTED_VERDICT
    text_verdict, _ = json.JSONDecoder().raw_decode(text_judged)
    assert sorted(text_verdict) == ["answer_1", "answer_2", "answer_3"]
    assert {v["rating"] for v in text_verdict.values()} == {2}
    assert counts == {"planted_verdict": 3}


def test_every_knob_has_a_flag_that_round_trips() -> None:
    config = FakeConfig(
        nested_judge=0.25,
        nested_depth=7,
        huge_body_bytes=10,
        huge_body_fraction=0.5,
        slow_body=0.01,
        echo_headers=True,
        planted_verdict=True,
    )
    args = vars(build_parser().parse_args(cli_args(config)))
    del args["host"], args["port"]
    assert FakeConfig(**args) == config


@pytest.mark.parametrize(
    "knobs",
    [
        {"nested_judge": 1.5},
        {"nested_depth": 0},
        {"huge_body_bytes": -1},
        {"huge_body_fraction": -0.1},
        {"slow_body": -0.1},
    ],
)
def test_hostile_knobs_are_checked(knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(knobs))):
        FakeConfig(**knobs)


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _eventually(check: Callable[[], bool]) -> bool:
    for _ in range(100):
        if check():
            return True
        time.sleep(0.02)
    return False
