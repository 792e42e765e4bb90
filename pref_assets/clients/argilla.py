"""A small Argilla 2.x REST client on httpx: dataset setup, idempotent record upserts, responses.

Argilla assigns its own record ids; records are matched by ``external_id`` (the prompt id), which the
bulk upsert endpoint keys on, so a re-push updates records instead of adding them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import httpx

from pref_assets.clients.retry import RetryPolicy, retry_after_seconds
from pref_assets.clients.transport import request_timeout
from pref_assets.core.records import GUIDELINES, dataset_spec
from pref_assets.core.rows import RecordRow
from pref_assets.core.secrets import Secrets

CHUNK = 200
SEARCH_PAGE = 1000
TERMS_LIMIT = 250
DRAFT = "draft"
RESPONSE_STATUS = {"entity": "response", "property": "status"}
SUBMITTED_FILTER = {"type": "terms", "scope": RESPONSE_STATUS, "values": ["submitted"]}
Spec = dict[str, list[dict[str, Any]]]
Record = dict[str, Any]
Keyed = tuple[str, Record]


class ArgillaError(RuntimeError):
    """Argilla is unreachable, rejected the key, refused a request, or holds an incompatible dataset."""

    def __init__(self, message: str, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class UpsertReport:
    """Per record id: None when stored, else the server's reason."""

    errors: dict[str, str | None]


class ArgillaClient:
    """Talks to ``<url>/api/v1`` with the ``X-Argilla-Api-Key`` header.

    Connection errors, 429 and 5xx are retried by ``retry``; 409 (already exists) and other 4xx are not.
    ``key_name`` names where the key came from in error messages; the key itself never appears: it and the
    bearer token are masked in everything read from the server (answers and errors), before any cut.
    ``bearer`` is sent as ``Authorization: Bearer``: a Hugging Face token, for a private Space.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        chunk_size: int = CHUNK,
        key_name: str = "the API key",
        bearer: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-Argilla-Api-Key": api_key} | ({"Authorization": f"Bearer {bearer}"} if bearer else {})
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/",
            headers=headers,
            timeout=request_timeout(timeout),
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._secrets = Secrets.of(api_key, bearer)
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._key_name = key_name
        self.url = url

    def __enter__(self) -> ArgillaClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request (retried when worth it); raise ArgillaError with the server's words on failure."""
        response = self._send(method, path, kwargs)
        if response.status_code >= 400:
            raise self._error(f"{method} /api/v1/{path}", response)
        return json.loads(self._secrets.mask(response.text)) if response.content else None

    def _error(self, call: str, response: httpx.Response) -> ArgillaError:
        code = response.status_code
        if code == 401:
            return ArgillaError(f"Argilla at {self.url} rejected {self._key_name} (HTTP 401)", code)
        if code == 403:
            refused = f"Argilla at {self.url} refused {call} for the user of {self._key_name} (HTTP 403)"
            return ArgillaError(f"{refused}: use an owner or admin key", code)
        detail = self._secrets.cut(response.text, 500)
        return ArgillaError(f"Argilla at {self.url}: {call}: HTTP {code}: {detail}", code, detail)

    def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                if attempt >= self._retry.max_attempts:
                    # not chained: a transport error may quote what the server sent (the reason is masked)
                    raise self._unreachable(err, attempt) from None
                retry_after = None
            else:
                if attempt >= self._retry.max_attempts or not self._retryable(response.status_code):
                    return response
                retry_after = retry_after_seconds(response.headers)
            time.sleep(self._retry.delay(attempt, retry_after))
            attempt += 1

    def _unreachable(self, err: httpx.TransportError, attempts: int) -> ArgillaError:
        if isinstance(err, httpx.TimeoutException):
            return ArgillaError(
                f"Argilla at {self.url} timed out: no answer within {self._timeout:g} s ({type(err).__name__}; "
                f"{attempts} attempts); raise argilla.timeout_s if the server is slow"
            )
        reason = self._secrets.mask(f"{type(err).__name__}: {err}")
        return ArgillaError(f"Argilla at {self.url} is unreachable ({reason}; {attempts} attempts)")

    def _retryable(self, status_code: int) -> bool:
        return status_code != 409 and self._retry.should_retry(status_code)

    def find_workspace(self, name: str) -> str | None:
        """Return the id of workspace ``name``, or None."""
        items = self.request("GET", "me/workspaces")["items"]
        return next((item["id"] for item in items if item["name"] == name), None)

    def workspace_id(self, name: str) -> str:
        """Return the id of workspace ``name``, creating it if the user may."""
        return self.find_workspace(name) or self.request("POST", "workspaces", json={"name": name})["id"]

    def find_dataset(self, name: str, workspace_id: str) -> dict[str, Any] | None:
        """Return the dataset ``name`` in the workspace, or None."""
        for item in self.request("GET", "me/datasets")["items"]:
            if item["name"] == name and item["workspace_id"] == workspace_id:
                return item
        return None

    def locate_dataset(self, name: str, workspace: str) -> str | None:
        """Return the id of dataset ``workspace/name`` without creating anything, or None."""
        workspace_id = self.find_workspace(workspace)
        found = self.find_dataset(name, workspace_id) if workspace_id else None
        return found["id"] if found else None

    def ensure_dataset(self, name: str, workspace: str, spec: Spec) -> str:
        """Return the id of a published dataset with ``spec``: create it, or check the existing one.

        An existing dataset must have the same fields and questions (and question settings); metadata
        properties it lacks are added. A draft (left by a run interrupted while creating it) is completed
        and published, as long as what it already has matches ``spec``.
        """
        workspace_id = self.workspace_id(workspace)
        label = f"{workspace}/{name}"
        found = self.find_dataset(name, workspace_id)
        if found is None:
            body = {"name": name, "workspace_id": workspace_id, "guidelines": GUIDELINES}
            found = self.request("POST", "datasets", json=body | {"allow_extra_metadata": True})
        if found["status"] == DRAFT:
            self._check_compatible(found["id"], label, spec, partial=True)
            self._complete_draft(found["id"], spec)
        self._check_compatible(found["id"], label, spec, partial=False)
        self._add_metadata_properties(found["id"], spec["metadata_properties"])
        return found["id"]

    def _complete_draft(self, dataset_id: str, spec: Spec) -> None:
        for kind in ("fields", "questions"):
            have = _names(self.request("GET", f"datasets/{dataset_id}/{kind}")["items"])
            for item in spec[kind]:
                if item["name"] not in have:
                    self.request("POST", f"datasets/{dataset_id}/{kind}", json=item)
        self.request("PUT", f"datasets/{dataset_id}/publish")

    def _check_compatible(self, dataset_id: str, label: str, spec: Spec, *, partial: bool) -> None:
        """Raise unless the dataset's fields and questions match ``spec``; ``partial`` allows missing ones."""
        problems = []
        for kind in ("fields", "questions"):
            have = self.request("GET", f"datasets/{dataset_id}/{kind}")["items"]
            problems += spec_differences(kind, have, spec[kind], partial=partial)
        have = self._metadata_properties(dataset_id)
        shared = _names(have) & _names(spec["metadata_properties"])
        wanted = _only(spec["metadata_properties"], shared)
        problems += spec_differences("metadata properties", _only(have, shared), wanted, partial=False)
        if problems:
            raise ArgillaError(
                f"dataset {label} at {self.url} exists with other settings: {'; '.join(problems)}. "
                "Use another dataset name (argilla.dataset) or delete that dataset"
            )

    def _metadata_properties(self, dataset_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"me/datasets/{dataset_id}/metadata-properties")["items"]

    def _add_metadata_properties(self, dataset_id: str, wanted: list[dict[str, Any]]) -> None:
        have = _names(self._metadata_properties(dataset_id))
        for item in wanted:
            if item["name"] not in have:
                self.request("POST", f"datasets/{dataset_id}/metadata-properties", json=item)

    def question_ids(self, dataset_id: str) -> dict[str, str]:
        """Return question name -> id."""
        items = self.request("GET", f"datasets/{dataset_id}/questions")["items"]
        return {q["name"]: q["id"] for q in items}

    def upsert_records(self, dataset_id: str, records: Sequence[dict[str, Any]]) -> UpsertReport:
        """Upsert records by ``external_id`` in chunks; a rejected record never blocks the others.

        A chunk the server rejects (422) is split in halves until the bad records stand alone.
        """
        ids = self.question_ids(dataset_id)
        items = [(r["id"], _bulk_item(r, ids)) for r in records]
        errors: dict[str, str | None] = {}
        for start in range(0, len(items), self._chunk_size):
            errors |= self._upsert_chunk(dataset_id, items[start : start + self._chunk_size])
        return UpsertReport(errors)

    def _upsert_chunk(self, dataset_id: str, chunk: list[Keyed]) -> dict[str, str | None]:
        body = {"items": [item for _, item in chunk]}
        try:
            self.request("PUT", f"datasets/{dataset_id}/records/bulk", json=body)
        except ArgillaError as err:
            if err.status_code != 422:
                raise
            if len(chunk) == 1:
                return {chunk[0][0]: f"HTTP 422: {err.detail}"}
            half = len(chunk) // 2
            return self._upsert_chunk(dataset_id, chunk[:half]) | self._upsert_chunk(dataset_id, chunk[half:])
        return {key: None for key, _ in chunk}

    def search_records(self, dataset_id: str, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield every record matching all ``filters``, with all users' responses, page by page."""
        body = {"filters": {"and": filters}}
        offset = 0
        while True:
            params = [("include", "responses"), ("offset", str(offset)), ("limit", str(SEARCH_PAGE))]
            page = self.request("POST", f"datasets/{dataset_id}/records/search", params=params, json=body)
            yield from (item["record"] for item in page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def records_by_external_id(self, dataset_id: str, external_ids: Sequence[str]) -> dict[str, Record]:
        """Return external id -> record (with responses) for those of ``external_ids`` in the dataset."""
        found: dict[str, Record] = {}
        for start in range(0, len(external_ids), TERMS_LIMIT):
            terms = {"type": "terms", "scope": {"entity": "record", "property": "external_id"},
                     "values": list(external_ids[start : start + TERMS_LIMIT])}  # fmt: skip
            found |= {r["external_id"]: r for r in self.search_records(dataset_id, [terms])}
        return found

    def submitted_records(self, dataset_id: str) -> list[dict[str, Any]]:
        """Return every record with at least one submitted response, with its responses."""
        return list(self.search_records(dataset_id, [SUBMITTED_FILTER]))

    def last_activity(self, dataset_id: str) -> str:
        """Return when a response in the dataset was last created, changed or deleted."""
        return self.request("GET", f"datasets/{dataset_id}")["last_activity_at"]

    def progress(self, dataset_id: str) -> dict[str, Any]:
        """Return the dataset's progress: ``total``, ``completed``, ``pending`` records."""
        return self.request("GET", f"datasets/{dataset_id}/progress")


def spec_differences(
    kind: str, have: list[dict[str, Any]], want: list[dict[str, Any]], *, partial: bool = False
) -> list[str]:
    """Return how the server's ``have`` items differ from the wanted ones (names, types, options).

    ``partial``: items not created yet are no difference (a draft dataset being completed).
    """
    have_by_name = {item["name"]: item for item in have}
    want_by_name = {item["name"]: item for item in want}
    problems = []
    missing = [] if partial else sorted(want_by_name.keys() - have_by_name.keys())
    unexpected = sorted(have_by_name.keys() - want_by_name.keys())
    if missing or unexpected:
        problems.append(f"{kind}: missing {missing}, unexpected {unexpected}")
    for name in sorted(want_by_name.keys() & have_by_name.keys()):
        wanted, found = _settings_key(want_by_name[name]), _settings_key(have_by_name[name])
        if wanted != found:
            problems.append(f"{kind} {name!r}: has {_describe(found)}, expected {_describe(wanted)}")
    return problems


def _settings_key(item: dict[str, Any]) -> dict[str, Any]:
    settings = item.get("settings") or {}
    key = {"type": settings.get("type")}
    if settings.get("options") is not None:
        key["options"] = sorted((o["value"] for o in settings["options"]), key=_option_order)
    key |= {bound: settings[bound] for bound in ("min", "max") if settings.get(bound) is not None}
    return key


def _option_order(value: Any) -> tuple[bool, Any]:
    """Numbers in numeric order, then strings."""
    return isinstance(value, str), value


def _describe(key: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in key.items())


def _names(items: list[dict[str, Any]]) -> set[str]:
    return {item["name"] for item in items}


def _only(items: list[dict[str, Any]], names: set[str]) -> list[dict[str, Any]]:
    return [item for item in items if item["name"] in names]


def _bulk_item(record: Record, question_ids: dict[str, str]) -> Record:
    """Return the upsert body of one record: keyed by ``external_id``, suggestions by question id."""
    suggestions = [_with_question_id(s, question_ids) for s in record["suggestions"]]
    return {k: v for k, v in record.items() if k != "id"} | {"suggestions": suggestions}


def _with_question_id(suggestion: Record, question_ids: dict[str, str]) -> Record:
    rest = {k: v for k, v in suggestion.items() if k != "question_name"}
    return rest | {"question_id": question_ids[suggestion["question_name"]]}


def push_records(
    client: ArgillaClient, dataset: str, workspace: str, rows: Sequence[RecordRow], n_answers: int
) -> tuple[list[RecordRow], str]:
    """Upsert the rows' records; return the rows marked pushed (or with the server's reason) and a summary."""
    dataset_id = client.ensure_dataset(dataset, workspace, dataset_spec(n_answers))
    records = [json.loads(r.record) for r in rows if r.record is not None]
    report = client.upsert_records(dataset_id, records) if records else UpsertReport({})
    marked = [_mark(row, report) for row in rows]
    pushed = sum(1 for row in marked if row.pushed)
    return marked, f"pushed {pushed} of {len(records)} records to {client.url} dataset {workspace}/{dataset}"


def _mark(row: RecordRow, report: UpsertReport) -> RecordRow:
    if row.record_id not in report.errors:
        return row
    error = report.errors[row.record_id]
    return replace(row, pushed=error is None, push_error=error)
