"""A small Argilla 2.x REST client on httpx: dataset setup, idempotent record upserts, responses."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pref_assets.core.records import GUIDELINES, dataset_spec

CHUNK = 200


class ArgillaError(RuntimeError):
    """Argilla is unreachable, rejected the key, refused a request, or holds an incompatible dataset."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class UpsertReport:
    """Per record id: None when stored, else the server's reason."""

    errors: dict[str, str | None]


class ArgillaClient:
    """Talks to ``<url>/api/v1`` with the ``X-Argilla-Api-Key`` header."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/",
            headers={"X-Argilla-Api-Key": api_key},
            timeout=timeout,
            transport=transport,
        )
        self.url = url

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; raise ArgillaError with the server's words on failure."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ArgillaError(f"Argilla at {self.url} is unreachable ({type(err).__name__}: {err})") from err
        if response.status_code in (401, 403):
            raise ArgillaError(
                f"Argilla at {self.url} rejected the API key (HTTP {response.status_code})", response.status_code
            )
        if response.status_code >= 400:
            raise ArgillaError(
                f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}", response.status_code
            )
        return response.json() if response.content else None

    def workspace_id(self, name: str) -> str:
        """Return the id of workspace ``name``, creating it if the user may."""
        for item in self.request("GET", "me/workspaces")["items"]:
            if item["name"] == name:
                return item["id"]
        return self.request("POST", "workspaces", json={"name": name})["id"]

    def find_dataset(self, name: str, workspace_id: str) -> dict[str, Any] | None:
        """Return the dataset ``name`` in the workspace, or None."""
        for item in self.request("GET", "me/datasets")["items"]:
            if item["name"] == name and item["workspace_id"] == workspace_id:
                return item
        return None

    def ensure_dataset(self, name: str, workspace: str, spec: dict[str, list[dict[str, Any]]]) -> str:
        """Return the id of a published dataset with ``spec``; create it, or check the existing one."""
        workspace_id = self.workspace_id(workspace)
        found = self.find_dataset(name, workspace_id)
        if found is not None:
            self._check_compatible(found["id"], name, spec)
            return found["id"]
        body = {"name": name, "workspace_id": workspace_id, "guidelines": GUIDELINES, "allow_extra_metadata": True}
        dataset_id = self.request("POST", "datasets", json=body)["id"]
        for kind in ("fields", "questions", "metadata_properties"):
            for item in spec[kind]:
                self.request("POST", f"datasets/{dataset_id}/{kind.replace('_', '-')}", json=item)
        self.request("PUT", f"datasets/{dataset_id}/publish")
        return dataset_id

    def _check_compatible(self, dataset_id: str, name: str, spec: dict[str, list[dict[str, Any]]]) -> None:
        for kind in ("fields", "questions"):
            have = {item["name"] for item in self.request("GET", f"datasets/{dataset_id}/{kind}")["items"]}
            want = {item["name"] for item in spec[kind]}
            if have != want:
                raise ArgillaError(
                    f"dataset {name!r} exists with other {kind}: missing {sorted(want - have)}, "
                    f"unexpected {sorted(have - want)}; use another dataset name or delete it"
                )

    def question_ids(self, dataset_id: str) -> dict[str, str]:
        """Return question name -> id."""
        items = self.request("GET", f"datasets/{dataset_id}/questions")["items"]
        return {q["name"]: q["id"] for q in items}

    def upsert_records(self, dataset_id: str, records: Sequence[dict[str, Any]]) -> UpsertReport:
        """Upsert records (by id / external_id) in chunks; a rejected record never blocks the others."""
        ids = self.question_ids(dataset_id)
        errors: dict[str, str | None] = {}
        for chunk in _chunks([_with_question_ids(r, ids) for r in records], CHUNK):
            errors |= self._upsert_chunk(dataset_id, chunk)
        return UpsertReport(errors)

    def _upsert_chunk(self, dataset_id: str, chunk: list[dict[str, Any]]) -> dict[str, str | None]:
        try:
            self.request("PUT", f"datasets/{dataset_id}/records/bulk", json={"items": chunk})
        except ArgillaError as err:
            if err.status_code != 422:
                raise
            if len(chunk) == 1:
                return {chunk[0]["id"]: str(err)}
            return {k: v for r in chunk for k, v in self._upsert_chunk(dataset_id, [r]).items()}
        return {r["id"]: None for r in chunk}

    def records(self, dataset_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Return the dataset's records with responses and suggestions."""
        params = [("include", "responses"), ("include", "suggestions"), ("limit", str(limit))]
        return self.request("GET", f"datasets/{dataset_id}/records", params=params)["items"]


def _with_question_ids(record: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    suggestions = [
        {k: v for k, v in s.items() if k != "question_name"} | {"question_id": ids[s["question_name"]]}
        for s in record["suggestions"]
    ]
    return record | {"suggestions": suggestions}


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def push_records(
    client: ArgillaClient, dataset: str, workspace: str, rows: list[dict[str, Any]], n_answers: int
) -> tuple[list[dict[str, Any]], str]:
    """Upsert the rows' records; return the rows marked pushed (or with the server's reason) and a summary."""
    dataset_id = client.ensure_dataset(dataset, workspace, dataset_spec(n_answers))
    records = [json.loads(r["record"]) for r in rows if r["record"] is not None]
    report = client.upsert_records(dataset_id, records) if records else UpsertReport({})
    marked = [_mark(row, report) for row in rows]
    pushed = sum(1 for row in marked if row["pushed"])
    return marked, f"pushed {pushed} of {len(records)} records to {client.url} dataset {workspace}/{dataset}"


def _mark(row: dict[str, Any], report: UpsertReport) -> dict[str, Any]:
    if row["record_id"] not in report.errors:
        return row
    error = report.errors[row["record_id"]]
    return row | {"pushed": error is None, "push_error": error}
