"""End-to-end check of the local argilla-server (needs tools/argilla/install.sh first).

Starts a server, builds a dataset (text field, 1-5 rating question, terms metadata),
upserts records by external_id twice, then creates, changes and deletes a human
response and deletes a suggestion, checking the stored records and the search index
after each step. Runs with any python that has httpx, e.g. the argilla venv's:

    .venvs/argilla/bin/python tools/argilla/smoke.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from pref_assets.testing.argilla_server import ArgillaServer, run_argilla_server  # noqa: E402

RATINGS = [1, 2, 3, 4, 5]
PROMPTS = {"p1": "What is 2+2?", "p2": "Name a prime.", "p3": "Spell cat."}


def call(client: httpx.Client, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    answer = client.request(method, path, **kwargs)
    if answer.status_code != expect:
        raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer.json() if answer.content else None


def workspace_id(client: httpx.Client, name: str) -> str:
    workspaces = call(client, "GET", "/me/workspaces", 200)["items"]
    return next(item["id"] for item in workspaces if item["name"] == name)


def create_dataset(client: httpx.Client, workspace: str) -> tuple[str, str]:
    dataset = call(client, "POST", "/datasets", 201, json={"name": "smoke", "workspace_id": workspace})
    dataset_id = dataset["id"]
    field = {
        "name": "text",
        "title": "Text",
        "required": True,
        "settings": {"type": "text", "use_markdown": False},
    }
    call(client, "POST", f"/datasets/{dataset_id}/fields", 201, json=field)
    rating = {
        "name": "rating",
        "title": "Rating",
        "required": True,
        "settings": {"type": "rating", "options": [{"value": value} for value in RATINGS]},
    }
    question = call(client, "POST", f"/datasets/{dataset_id}/questions", 201, json=rating)
    topic = {"name": "topic", "title": "Topic", "settings": {"type": "terms"}, "visible_for_annotators": True}
    call(client, "POST", f"/datasets/{dataset_id}/metadata-properties", 201, json=topic)
    call(client, "PUT", f"/datasets/{dataset_id}/publish", 200)
    return dataset_id, question["id"]


def upsert_records(client: httpx.Client, dataset_id: str, question_id: str) -> list[dict[str, Any]]:
    items = [
        {
            "external_id": key,
            "fields": {"text": text},
            "metadata": {"topic": "smoke"},
            "suggestions": [{"question_id": question_id, "value": 3, "agent": "judge", "score": 0.5}],
        }
        for key, text in PROMPTS.items()
    ]
    return list(
        call(client, "PUT", f"/datasets/{dataset_id}/records/bulk", 200, json={"items": items})["items"]
    )


def list_records(client: httpx.Client, dataset_id: str) -> dict[str, Any]:
    params = [("include", "responses"), ("include", "suggestions")]
    return dict(call(client, "GET", f"/datasets/{dataset_id}/records", 200, params=params))


def search_total(client: httpx.Client, dataset_id: str, filter_: dict[str, Any]) -> int:
    body = {"filters": {"and": [filter_]}}
    return int(call(client, "POST", f"/datasets/{dataset_id}/records/search", 200, json=body)["total"])


def rated(value: int) -> dict[str, Any]:
    return {"type": "range", "scope": {"entity": "response", "question": "rating"}, "ge": value, "le": value}


def suggested(value: int) -> dict[str, Any]:
    return {"type": "terms", "scope": {"entity": "suggestion", "question": "rating"}, "values": [value]}


SUBMITTED = {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["submitted"]}


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
    print(f"ok: {message}")


def exercise(server: ArgillaServer) -> None:
    with server.client() as client:
        dataset_id, question_id = create_dataset(client, workspace_id(client, server.workspace))
        first = upsert_records(client, dataset_id, question_id)
        second = upsert_records(client, dataset_id, question_id)
        check(list_records(client, dataset_id)["total"] == 3, "3 records after two upserts")
        check([r["id"] for r in first] == [r["id"] for r in second], "upsert by external_id keeps record ids")
        record_id = first[0]["id"]

        response = call(
            client,
            "POST",
            f"/records/{record_id}/responses",
            201,
            json={"values": {"rating": {"value": 4}}, "status": "submitted"},
        )
        check(search_total(client, dataset_id, rated(4)) == 1, "created response is in the search index")
        call(
            client,
            "PUT",
            f"/responses/{response['id']}",
            200,
            json={"values": {"rating": {"value": 5}}, "status": "submitted"},
        )
        check(search_total(client, dataset_id, rated(5)) == 1, "changed response is in the search index")
        check(search_total(client, dataset_id, rated(4)) == 0, "old response value is gone from the index")
        stored = next(r for r in list_records(client, dataset_id)["items"] if r["id"] == record_id)
        check(stored["responses"][0]["values"] == {"rating": {"value": 5}}, "records list shows the response")
        check(stored["status"] == "completed", "record completed after one submitted response")
        upsert_records(client, dataset_id, question_id)
        stored = next(r for r in list_records(client, dataset_id)["items"] if r["id"] == record_id)
        check(len(stored["responses"]) == 1, "re-upsert keeps the human response")
        check(search_total(client, dataset_id, SUBMITTED) == 1, "re-upsert keeps the response in the index")
        progress = call(client, "GET", f"/datasets/{dataset_id}/progress", 200)
        check(progress["completed"] == 1 and progress["total"] == 3, f"progress {progress}")

        call(client, "DELETE", f"/responses/{response['id']}", 200)
        check(search_total(client, dataset_id, SUBMITTED) == 0, "deleted response is gone from the index")

        suggestion_id = stored["suggestions"][0]["id"]
        call(client, "DELETE", f"/records/{record_id}/suggestions", 204, params={"ids": suggestion_id})
        suggestions = call(client, "GET", f"/records/{record_id}/suggestions", 200)["items"]
        check(suggestions == [], "suggestion deleted")
        check(
            search_total(client, dataset_id, suggested(3)) == 2, "deleted suggestion is gone from the index"
        )


def main() -> int:
    started = time.monotonic()
    with run_argilla_server() as server:
        print(f"ready in {time.monotonic() - started:.1f} s at {server.url}")
        exercise(server)
    print(f"smoke passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
