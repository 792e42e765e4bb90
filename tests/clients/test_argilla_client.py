from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from pref_assets.clients.argilla import ArgillaClient, ArgillaError, push_records, spec_differences
from pref_assets.clients.retry import RetryPolicy
from pref_assets.core.records import build_record, dataset_spec
from pref_assets.core.rows import RatingRow, RecordRow

URL = "http://argilla.test"
KEY = "sk-argilla-sentinel-31337"
KINDS = ("fields", "questions", "metadata-properties")
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


class FakeArgilla:
    """Just enough of Argilla's REST API, in memory; records whose metadata has ``bad`` are rejected."""

    def __init__(self, spec: dict[str, list[dict[str, Any]]] | None = None, status: str = "ready") -> None:
        self.requests: list[httpx.Request] = []
        self.bulk_sizes: list[int] = []
        self.datasets: list[dict[str, Any]] = []
        self.items: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self.records: list[dict[str, Any]] = []
        if spec is not None:
            self.datasets.append({"id": "ds1", "name": "review", "workspace_id": "ws1", "status": status})
            for kind in ("fields", "questions", "metadata_properties"):
                self.items[kind.replace("_", "-")] = [dict(i, id=f"{kind}-{i['name']}") for i in spec[kind]]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1/")
        body = json.loads(request.content) if request.content else None
        return self.route(request.method, path, body, request)

    def route(self, method: str, path: str, body: Any, request: httpx.Request) -> httpx.Response:
        parts = path.split("/")
        if (method, path) == ("GET", "me/workspaces"):
            return httpx.Response(200, json={"items": [{"id": "ws1", "name": "argilla"}]})
        if (method, path) == ("GET", "me/datasets"):
            return httpx.Response(200, json={"items": self.datasets})
        if (method, path) == ("POST", "datasets"):
            self.datasets.append({"id": "ds1", "status": "draft"} | body)
            return httpx.Response(201, json=self.datasets[-1])
        if parts[-1] in self.items and method == "GET":
            return httpx.Response(200, json={"items": self.items[parts[-1]]})
        if parts[-1] in self.items and method == "POST":
            self.items[parts[-1]].append(dict(body, id=f"{parts[-1]}-{body['name']}"))
            return httpx.Response(201, json=body)
        if parts[-1] == "publish":
            self.datasets[0]["status"] = "ready"
            return httpx.Response(200, json=self.datasets[0])
        if parts[-1] == "bulk":
            return self.bulk(body["items"])
        if parts[-1] == "search":
            return self.search(body, request)
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})

    def bulk(self, items: list[dict[str, Any]]) -> httpx.Response:
        self.bulk_sizes.append(len(items))
        for position, item in enumerate(items):
            if item["metadata"].get("bad"):
                detail = f"Record at position {position} is not valid because metadata is not valid"
                return httpx.Response(422, json={"detail": detail})
        self.records += items
        return httpx.Response(200, json={"items": items})

    def search(self, body: dict[str, Any], request: httpx.Request) -> httpx.Response:
        [terms] = body["filters"]["and"]
        wanted = set(terms["values"])
        found = [r for r in self.records if r["external_id"] in wanted]
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = [{"record": r | {"id": f"srv-{r['external_id']}"}} for r in found[offset : offset + limit]]
        return httpx.Response(200, json={"items": page, "total": len(found)})


def _client(handler: Any, **kwargs: Any) -> ArgillaClient:
    options = {"retry": FAST, "key_name": "the API key in $ARGILLA_API_KEY"} | kwargs
    return ArgillaClient(URL, KEY, transport=httpx.MockTransport(handler), **options)


def _row(pid: str, **extra: Any) -> RatingRow:
    base = {"prompt_id": pid, "instruction": f"Q {pid}?", "topic": "t", "generation_models": ["m1", "m2"],
            "generations": ["A", "B"], "scores": [4.0, 2.0], "judge_model": "judge"}  # fmt: skip
    return RatingRow(**(base | extra))


def _records(n: int, bad: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    records = [build_record(_row(f"p{i}"), dataset="review", batch="batch-00000") for i in range(n)]
    for i in bad:
        records[i]["metadata"]["bad"] = True
    return records


def _paths(fake: FakeArgilla, method: str) -> list[str]:
    return [r.url.path.removeprefix("/api/v1/") for r in fake.requests if r.method == method]


def test_missing_dataset_is_created_with_fields_questions_metadata_and_published() -> None:
    fake = FakeArgilla()
    spec = dataset_spec(2)
    assert _client(fake).ensure_dataset("review", "argilla", spec) == "ds1"
    posted = _paths(fake, "POST")
    assert posted[0] == "datasets"
    assert posted.count("datasets/ds1/fields") == 3 and posted.count("datasets/ds1/questions") == 4
    assert posted.count("datasets/ds1/metadata-properties") == len(spec["metadata_properties"])
    assert _paths(fake, "PUT") == ["datasets/ds1/publish"]
    assert fake.requests[0].headers["X-Argilla-Api-Key"] == KEY
    assert fake.datasets[0]["status"] == "ready" and fake.datasets[0]["allow_extra_metadata"] is True


@pytest.mark.parametrize(("bearer", "authorization"), [(None, None), ("hf_token123", "Bearer hf_token123")])
def test_a_private_space_gets_the_hugging_face_token(bearer: str | None, authorization: str | None) -> None:
    fake = FakeArgilla()
    _client(fake, bearer=bearer).find_workspace("argilla")
    assert fake.requests[0].headers.get("Authorization") == authorization


def test_existing_compatible_dataset_is_reused_and_gets_missing_metadata_properties() -> None:
    spec = dataset_spec(2)
    fake = FakeArgilla(_without("metadata_properties", "judge_margin"))
    assert _client(fake).ensure_dataset("review", "argilla", spec) == "ds1"
    assert _paths(fake, "POST") == ["datasets/ds1/metadata-properties"]
    assert json.loads(fake.requests[-1].content)["name"] == "judge_margin"


def _changed(kind: str, name: str, **settings: Any) -> dict[str, list[dict[str, Any]]]:
    spec = dataset_spec(2)
    items = [dict(i, settings=i["settings"] | settings) if i["name"] == name else i for i in spec[kind]]
    return spec | {kind: items}


def _without(kind: str, name: str) -> dict[str, list[dict[str, Any]]]:
    spec = dataset_spec(2)
    return spec | {kind: [i for i in spec[kind] if i["name"] != name]}


def test_a_draft_left_by_an_interrupted_run_is_completed_and_published() -> None:
    spec = dataset_spec(2)
    begun = spec | {"fields": spec["fields"][:1], "questions": [], "metadata_properties": []}
    fake = FakeArgilla(begun, status="draft")
    assert _client(fake).ensure_dataset("review", "argilla", spec) == "ds1"
    posted = _paths(fake, "POST")
    assert posted.count("datasets/ds1/fields") == 2 and posted.count("datasets/ds1/questions") == 4
    assert "datasets" not in posted and _paths(fake, "PUT") == ["datasets/ds1/publish"]
    assert fake.datasets[0]["status"] == "ready"


def test_a_draft_with_other_settings_is_not_touched() -> None:
    two_options = [{"value": 1}, {"value": 2}]
    fake = FakeArgilla(_changed("questions", "rating_1", options=two_options), status="draft")
    with pytest.raises(ArgillaError, match="questions 'rating_1': has type rating, options \\[1, 2\\]"):
        _client(fake).ensure_dataset("review", "argilla", dataset_spec(2))
    assert _paths(fake, "POST") == [] and _paths(fake, "PUT") == []


@pytest.mark.parametrize(
    ("existing", "needles"),
    [
        (dataset_spec(3), ["fields: missing [], unexpected ['response_3']", "questions: missing []"]),
        (_without("questions", "ranking"), ["questions: missing ['ranking']"]),
        (_without("fields", "response_2"), ["fields: missing ['response_2']"]),
        (_changed("questions", "rating_1", options=[{"value": v} for v in range(1, 11)]),
         ["questions 'rating_1': has type rating, options [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
          "expected type rating, options [1, 2, 3, 4, 5]"]),
        (_changed("questions", "ranking", options=[{"value": "a"}, {"value": "b"}]), ["questions 'ranking'"]),
        (_changed("questions", "comment", type="label_selection"), ["has type label_selection"]),
        (_changed("metadata_properties", "topic", type="integer"), ["metadata properties 'topic'"]),
        (_changed("metadata_properties", "judge_rating_1", max=10.0), ["has type float, min 1.0, max 10.0"]),
    ],
)  # fmt: skip
def test_incompatible_dataset_is_a_clear_error(existing: dict, needles: list[str]) -> None:
    fake = FakeArgilla(existing)
    with pytest.raises(ArgillaError) as caught:
        _client(fake).ensure_dataset("review", "argilla", dataset_spec(2))
    message = str(caught.value)
    assert f"dataset argilla/review at {URL}" in message and "argilla.dataset" in message
    for needle in needles:
        assert needle in message
    assert KEY not in message
    assert _paths(fake, "POST") == [] and _paths(fake, "PUT") == []


@pytest.mark.parametrize(
    ("have", "want", "problems"),
    [
        ([], [], []),
        ([{"name": "a", "settings": {"type": "text"}}], [{"name": "a", "settings": {"type": "text"}}], []),
        ([{"name": "a", "settings": {"type": "text", "use_markdown": False}}],
         [{"name": "a", "settings": {"type": "text", "use_markdown": True}}], []),
        ([{"name": "r", "settings": {"type": "rating", "options": [{"value": 2}, {"value": 1}]}}],
         [{"name": "r", "settings": {"type": "rating", "options": [{"value": 1}, {"value": 2}]}}], []),
        ([{"name": "k", "settings": {"type": "ranking", "options": [{"value": "x", "description": None}]}}],
         [{"name": "k", "settings": {"type": "ranking", "options": [{"value": "x", "text": "Answer"}]}}], []),
        ([], [{"name": "a", "settings": {"type": "text"}}], ["things: missing ['a'], unexpected []"]),
        ([{"name": "r", "settings": {"type": "rating", "options": [{"value": 1}]}}],
         [{"name": "r", "settings": {"type": "rating", "options": [{"value": 1}, {"value": 2}]}}],
         ["things 'r': has type rating, options [1], expected type rating, options [1, 2]"]),
    ],
)  # fmt: skip
def test_spec_differences(have: list, want: list, problems: list[str]) -> None:
    assert spec_differences("things", have, want) == problems


def test_records_are_upserted_in_chunks_by_external_id_with_question_ids() -> None:
    fake = FakeArgilla(dataset_spec(2))
    records = _records(450)
    report = _client(fake, chunk_size=200).upsert_records("ds1", records)
    assert fake.bulk_sizes == [200, 200, 50]
    assert report.errors == {r["id"]: None for r in records}
    sent = fake.records[0]
    assert "id" not in sent and sent["external_id"] == "p0"
    assert {s["question_id"] for s in sent["suggestions"]} == {"questions-rating_1", "questions-rating_2",
                                                               "questions-ranking"}  # fmt: skip
    assert all("question_name" not in s for s in sent["suggestions"])


@pytest.mark.parametrize(
    ("n", "bad"), [(1, {0}), (10, {3}), (10, {0, 9}), (16, {2, 3, 11}), (7, {0, 1, 2, 3, 4, 5, 6})]
)
def test_a_rejected_record_is_reported_on_its_own_and_never_blocks_the_rest(n: int, bad: set[int]) -> None:
    fake = FakeArgilla(dataset_spec(2))
    records = _records(n, frozenset(bad))
    report = _client(fake, chunk_size=8).upsert_records("ds1", records)
    for i, record in enumerate(records):
        error = report.errors[record["id"]]
        if i in bad:
            assert error is not None and error.startswith("HTTP 422") and "metadata is not valid" in error
        else:
            assert error is None
    assert sorted(r["external_id"] for r in fake.records) == sorted(f"p{i}" for i in range(n) if i not in bad)
    assert len(fake.bulk_sizes) <= 2 * n


def test_bisection_needs_few_requests_for_one_bad_record_in_a_big_chunk() -> None:
    fake = FakeArgilla(dataset_spec(2))
    _client(fake, chunk_size=200).upsert_records("ds1", _records(200, frozenset({137})))
    assert len(fake.bulk_sizes) <= 2 * 8 + 1
    assert len(fake.records) == 199


def _status_handler(codes: list[int], seen: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        code = codes[min(len(seen), len(codes)) - 1]
        return httpx.Response(code, json={"detail": f"status {code}"} if code >= 400 else {"items": []})

    return handler


@pytest.mark.parametrize(
    ("codes", "attempts", "ok"),
    [
        ([200], 1, True),
        ([503, 200], 2, True),
        ([429, 502, 200], 3, True),
        ([500, 500, 500], 3, False),
        ([409], 1, False),
        ([400], 1, False),
        ([422], 1, False),
    ],
)
def test_retries_only_what_is_worth_retrying(codes: list[int], attempts: int, ok: bool) -> None:
    seen: list[httpx.Request] = []
    client = _client(_status_handler(codes, seen))
    if ok:
        assert client.request("GET", "me/workspaces") == {"items": []}
    else:
        with pytest.raises(ArgillaError, match=f"HTTP {codes[-1]}"):
            client.request("GET", "me/workspaces")
    assert len(seen) == attempts


@pytest.mark.parametrize(
    ("code", "needle"),
    [(401, "rejected the API key in $ARGILLA_API_KEY (HTTP 401)"), (403, "use an owner or admin key")],
)
def test_a_wrong_key_is_a_clear_error_without_the_key(code: int, needle: str) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(ArgillaError) as caught:
        _client(_status_handler([code], seen)).ensure_dataset("review", "argilla", dataset_spec(2))
    assert needle in str(caught.value) and URL in str(caught.value)
    assert KEY not in str(caught.value)
    assert caught.value.status_code == code and len(seen) == 1


def test_an_unreachable_server_is_retried_then_named() -> None:
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ArgillaError) as caught:
        _client(refuse).ensure_dataset("review", "argilla", dataset_spec(2))
    assert str(caught.value) == (
        f"Argilla at {URL} is unreachable (ConnectError: [Errno 111] Connection refused; 3 attempts)"
    )
    assert len(seen) == 3


def test_a_server_error_during_upsert_is_raised_not_reported_per_record() -> None:
    fake = FakeArgilla(dataset_spec(2))

    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bulk"):
            return httpx.Response(500, text="Internal Server Error")
        return fake(request)

    with pytest.raises(ArgillaError, match="HTTP 500"):
        _client(broken).upsert_records("ds1", _records(3))


def test_records_are_found_by_external_id_in_chunks_and_pages() -> None:
    fake = FakeArgilla(dataset_spec(2))
    client = _client(fake)
    client.upsert_records("ds1", _records(600))
    wanted = [*(f"p{i}" for i in range(600)), "missing"]
    found = client.records_by_external_id("ds1", wanted)
    assert set(found) == {f"p{i}" for i in range(600)}
    assert found["p5"]["id"] == "srv-p5"
    searches = [r for r in fake.requests if r.url.path.endswith("/search")]
    assert [len(json.loads(r.content)["filters"]["and"][0]["values"]) for r in searches] == [250, 250, 101]
    assert all(("include", "responses") in r.url.params.multi_items() for r in searches)


def test_search_follows_pages_until_the_total() -> None:
    pages = {0: (1000, 2500), 1000: (1000, 2500), 2000: (500, 2500)}
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        seen.append(offset)
        size, total = pages[offset]
        items = [{"record": {"id": f"r{offset + i}"}} for i in range(size)]
        return httpx.Response(200, json={"items": items, "total": total})

    records = list(_client(handler).search_records("ds1", []))
    assert len(records) == 2500 and seen == [0, 1000, 2000]


def test_push_records_marks_each_row() -> None:
    fake = FakeArgilla()
    records = _records(3, frozenset({1}))
    rows = [RecordRow(prompt_id=r["external_id"], record_id=r["id"], record=json.dumps(r), pushed=False,
                      push_error=None) for r in records]  # fmt: skip
    rows.append(replace(rows[0], prompt_id="failed", record_id=None, record=None))
    marked, summary = push_records(_client(fake), "review", "argilla", rows, 2)
    assert [r.pushed for r in marked] == [True, False, True, False]
    assert marked[1].push_error.startswith("HTTP 422") and marked[3].push_error is None
    assert summary == f"pushed 2 of 3 records to {URL} dataset argilla/review"


BEARER = "hf_argillaSpaceBearer0123456789"


def _echo_headers(status: int, *, padding: int = 0, lower: bool = False) -> Any:
    """A server that answers with the request's headers in its body (as some proxies and debug servers do)."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
        echoed = echoed.lower() if lower else echoed
        body = {"detail": "x" * padding + echoed, "items": [{"id": "ws1", "name": echoed}]}
        return httpx.Response(status, json=body)

    return handler


@pytest.mark.parametrize("lower", [False, True])
def test_an_error_echoing_the_headers_never_shows_the_key_or_the_bearer(lower: bool) -> None:
    with pytest.raises(ArgillaError) as caught:
        _client(_echo_headers(400, lower=lower), bearer=BEARER).request("GET", "me/workspaces")
    message = f"{caught.value} {caught.value.detail}"
    assert "HTTP 400" in message and "x-argilla-api-key: ***" in message.lower()
    for secret in (KEY, BEARER):
        assert secret.lower() not in message.lower()


def test_a_key_straddling_the_cut_of_an_error_leaves_no_prefix() -> None:
    # the key starts a few characters before the 500-character cut of the detail
    echoed = f'{{"detail": "{{}}x-argilla-api-key: {KEY}"}}'
    padding = 500 - len('{"detail": "') - len("x-argilla-api-key: ") - 6

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=echoed.replace("{}", "x" * padding, 1))

    with pytest.raises(ArgillaError) as caught:
        _client(handler).request("GET", "me/workspaces")
    assert KEY[:6] not in str(caught.value) and "x-argilla-api-key: ***" in str(caught.value)


def test_an_answer_echoing_the_headers_is_read_with_the_key_masked() -> None:
    items = _client(_echo_headers(200)).request("GET", "me/workspaces")["items"]
    assert KEY not in items[0]["name"] and "x-argilla-api-key: ***" in items[0]["name"]


def test_a_slow_server_is_said_to_time_out_naming_the_url_and_the_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ArgillaError) as caught:
        _client(slow, timeout=2.5).request("GET", "me/workspaces")
    assert str(caught.value).startswith(f"Argilla at {URL} timed out: no answer within 2.5 s (ReadTimeout")
    assert "unreachable" not in str(caught.value)


def test_a_transport_error_quoting_the_server_is_masked_and_not_chained() -> None:
    def garbled(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"illegal status line: b'HTTP/1.1 {KEY}'", request=request)

    with pytest.raises(ArgillaError) as caught:
        _client(garbled).request("GET", "me/workspaces")
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
