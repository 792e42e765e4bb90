"""The Batch API client's own logic, on a mock transport: retries, a create never repeated once it may have
reached the server, bounded answers and files, the key masked, ids kept to one path segment."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from pref_assets.clients.batch_api import BatchAPIClient, BatchAPIError
from pref_assets.clients.retry import RetryPolicy

KEY = "sk-test-0123456789abcdef"
Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, **kwargs: object) -> tuple[BatchAPIClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = BatchAPIClient("http://provider.test/v1", api_key=KEY, transport=httpx.MockTransport(record),
                            retry=RetryPolicy(max_attempts=3), sleep=lambda s: None, **kwargs)  # fmt: skip
    return client, seen


def test_upload_sends_a_multipart_batch_file_with_the_key() -> None:
    client, seen = _client(lambda r: httpx.Response(200, json={"id": "file-1"}))
    assert client.upload(b'{"custom_id": "a"}\n', "job.jsonl") == "file-1"
    request = seen[0]
    assert request.url.path == "/v1/files" and request.headers["authorization"] == f"Bearer {KEY}"
    body = request.content
    assert b'name="purpose"' in body and b"batch" in body and b'filename="job.jsonl"' in body


def test_create_names_the_endpoint_window_and_metadata() -> None:
    client, seen = _client(lambda r: httpx.Response(200, json={"id": "batch_1", "status": "validating"}))
    client.create("file-1", window="24h", metadata={"pref_assets_job": "k"})
    assert json.loads(seen[0].content) == {
        "input_file_id": "file-1",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"pref_assets_job": "k"},
    }


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")])
def test_a_create_that_may_have_reached_the_server_is_not_sent_again(failure: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    client, seen = _client(handler)
    with pytest.raises(BatchAPIError) as err:
        client.create("file-1", window="24h", metadata={})
    assert len(seen) == 1 and err.value.sent


def test_a_create_answered_500_is_not_sent_again_but_a_429_is() -> None:
    client, seen = _client(lambda r: httpx.Response(500, json={"error": {"message": "oops"}}))
    with pytest.raises(BatchAPIError, match="HTTP 500: oops"):
        client.create("file-1", window="24h", metadata={})
    assert len(seen) == 1
    answers = iter([httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(200, json={"id": "batch_1"})])
    client, seen = _client(lambda r: next(answers))
    assert client.create("file-1", window="24h", metadata={})["id"] == "batch_1" and len(seen) == 2


def test_reads_are_retried_on_connection_errors_and_5xx_but_not_on_404() -> None:
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200, json={"id": "b"})])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, seen = _client(handler)
    assert client.retrieve("b")["id"] == "b" and len(seen) == 3
    client, seen = _client(lambda r: httpx.Response(404, json={"error": {"message": "no batch"}}))
    with pytest.raises(BatchAPIError, match="404"):
        client.retrieve("b")
    assert len(seen) == 1


def test_an_echoed_key_is_masked_in_errors() -> None:
    client, _ = _client(lambda r: httpx.Response(401, json={"error": {"message": f"bad key {KEY}"}}))
    with pytest.raises(BatchAPIError) as err:
        client.retrieve("b")
    assert KEY not in str(err.value) and "***" in str(err.value)


def test_answers_and_files_are_bounded() -> None:
    client, seen = _client(lambda r: httpx.Response(200, content=b"{" + b" " * 5000 + b"}"), max_object_bytes=1024)
    with pytest.raises(BatchAPIError, match="larger than 1024"):
        client.retrieve("b")
    assert len(seen) == 1  # the same answer would come again
    client, _ = _client(lambda r: httpx.Response(200, content=b"x\n" * 5000), max_file_bytes=4096)
    with pytest.raises(BatchAPIError, match="larger than 4096"), client.download("file-9") as chunks:
        b"".join(chunks)


def test_download_streams_the_file() -> None:
    client, seen = _client(lambda r: httpx.Response(200, content=b"a\nb\n"))
    with client.download("file-9") as chunks:
        assert b"".join(chunks) == b"a\nb\n"
    assert seen[0].url.path == "/v1/files/file-9/content"


@pytest.mark.parametrize("bad", ["../files", "b/../../x", "", "a b", "b?x=1"])
def test_ids_are_one_path_segment(bad: str) -> None:
    client, seen = _client(lambda r: httpx.Response(200, json={}))
    with pytest.raises(BatchAPIError, match="not a valid id"):
        client.retrieve(bad)
    assert not seen


def test_find_pages_through_the_list_by_metadata() -> None:
    pages = {
        None: {"data": [{"id": "b3", "metadata": {}}], "has_more": True, "last_id": "b3"},
        "b3": {"data": [{"id": "b2", "metadata": {"pref_assets_job": "k"}}], "has_more": False, "last_id": "b2"},
    }
    client, _ = _client(lambda r: httpx.Response(200, json=pages[r.url.params.get("after")]))
    assert client.find("pref_assets_job", "k") == {"id": "b2", "metadata": {"pref_assets_job": "k"}}
    assert client.find("pref_assets_job", "other") is None
