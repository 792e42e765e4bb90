"""The review loop on a real argilla-server 2.8: push, re-push, labels back, final pairs, sensor, outages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import polars as pl
import pytest

from pref_assets.clients.argilla import ArgillaError
from pref_assets.definitions import JOB_NAME, REVIEW_JOB_NAME, build_definitions
from pref_assets.defs.resources import build_argilla_resource
from pref_assets.defs.review import SENSOR_NAME
from pref_assets.settings import Settings
from pref_assets.testing.argilla_server import (
    DEFAULT_API_KEY,
    INSTALL_HINT,
    ArgillaServer,
    argilla_available,
    run_argilla_server,
)
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai
from pref_assets.testing.fake_pipeline import write_settings

KEY_ENV = "PREF_ASSETS_TEST_ARGILLA_KEY"
WRONG_KEY = "wrong-key-5f1c2e"
BATCH = "batch-00000"
N_PROMPTS = 8
BATCH_SIZE = 4


@pytest.fixture(scope="module")
def argilla() -> Iterator[ArgillaServer]:
    if not argilla_available():
        pytest.skip(INSTALL_HINT)
    started = time.monotonic()
    with run_argilla_server() as server:
        print(f"argilla-server ready in {time.monotonic() - started:.1f} s")
        yield server


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeServer]:
    with run_fake_openai(seed=5) as server:
        yield server


@pytest.fixture(autouse=True)
def _argilla_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, DEFAULT_API_KEY)


def _settings(tmp_path: Path, llm: FakeServer, url: str | None, dataset: str, judge_seed: int = 1) -> Settings:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"instruction": "Explain idea number {i}.", "topic": "t{i % 2}"}}\n'
                               for i in range(N_PROMPTS)))  # fmt: skip
    model = {"endpoint": "fake"}
    return Settings.model_validate({
        "storage_dir": str(tmp_path / "store"),
        "batch_size": BATCH_SIZE,
        "source": {"kind": "files", "paths": [str(prompts)]},
        "endpoints": [{"name": "fake", "base_url": llm.base_url, "structured_output": "json_schema"}],
        "generators": [model | {"name": "gen-a", "model": "org/a", "params": {"temperature": 0.2}},
                       model | {"name": "gen-b", "model": "org/b", "params": {"temperature": 0.9}}],
        "judge": model | {"name": "judge-70b", "model": "org/judge", "params": {"seed": judge_seed}},
        "argilla": {"url": url, "api_key_env": KEY_ENV, "dataset": dataset, "max_attempts": 2},
    })  # fmt: skip


def _run(settings: Settings, job: str = JOB_NAME, partition: str = BATCH) -> dg.ExecuteInProcessResult:
    return (
        build_definitions(settings)
        .resolve_job_def(job)
        .execute_in_process(partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )


def _read(settings: Settings, asset: str, partition: str = BATCH) -> pl.DataFrame:
    return pl.read_parquet(Path(settings.storage_dir) / asset / f"{partition}.parquet")


def _failure(result: dg.ExecuteInProcessResult) -> str:
    [event] = result.get_step_failure_events()
    return event.step_failure_data.user_failure_data.description


def _dataset_id(client: httpx.Client, name: str) -> str:
    return next(d["id"] for d in client.get("/me/datasets").json()["items"] if d["name"] == name)


def _records(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    params = [("include", "responses"), ("include", "suggestions"), ("limit", "1000")]
    answer = client.get(f"/datasets/{_dataset_id(client, name)}/records", params=params).json()
    assert answer["total"] == len(answer["items"])
    return answer["items"]


def _workspace_id(client: httpx.Client) -> str:
    return next(w["id"] for w in client.get("/me/workspaces").json()["items"] if w["name"] == "argilla")


def _annotator(client: httpx.Client, name: str) -> httpx.Client:
    """Create an annotator in the default workspace and return a client with their key."""
    user = client.post("/users", json={"first_name": name, "username": name, "password": "annotator-pass",
                                       "role": "annotator"}).json()  # fmt: skip
    workspace = _workspace_id(client)
    client.post(f"/workspaces/{workspace}/users", json={"user_id": user["id"]}).raise_for_status()
    return httpx.Client(base_url=client.base_url, headers={"X-Argilla-Api-Key": user["api_key"]}, timeout=30)


def _respond(client: httpx.Client, record_id: str, ratings: list[int], ranking: list[int]) -> None:
    values: dict[str, Any] = {f"rating_{i + 1}": {"value": r} for i, r in enumerate(ratings)}
    values["ranking"] = {"value": [{"value": f"response_{s + 1}", "rank": k + 1} for k, s in enumerate(ranking)]}
    answer = client.post(f"/records/{record_id}/responses", json={"values": values, "status": "submitted"})
    assert answer.status_code == 201, answer.text


def _a_judged_pair(settings: Settings, partition: str) -> dict[str, Any]:
    pairs = _read(settings, "dpo_pairs", partition).filter(pl.col("status") == "ok")
    assert pairs.height > 0, "the fake judge gave no pair in this batch"
    return pairs.row(0, named=True)


def _sensor_context(settings: Settings, cursor: str | None) -> dg.SensorEvaluationContext:
    resources = {"argilla": build_argilla_resource(settings.argilla)}
    return dg.build_sensor_context(cursor=cursor, resources=resources, instance=dg.DagsterInstance.ephemeral())


def _slot(settings: Settings, model: str) -> int:
    return [g.name for g in settings.generators].index(model)


@pytest.mark.slow
def test_push_creates_once_and_a_rerun_updates_records_and_suggestions(
    tmp_path: Path, llm: FakeServer, argilla: ArgillaServer
) -> None:
    settings = _settings(tmp_path, llm, argilla.url, "idempotent")
    assert _run(settings).success
    pushed = _read(settings, "argilla_records")
    assert pushed["pushed"].all() and pushed["push_error"].is_null().all()
    before = _scores(settings)
    with argilla.client() as client:
        first = _records(client, "idempotent")
        assert len(first) == BATCH_SIZE
        assert all("judge_margin" in r["metadata"] and r["metadata"]["batch"] == BATCH for r in first)

        rejudged = _settings(tmp_path, llm, argilla.url, "idempotent", judge_seed=2)
        assert _run(rejudged).success
        second = _records(client, "idempotent")
    assert len(second) == BATCH_SIZE
    assert {r["id"] for r in second} == {r["id"] for r in first}
    scores = _scores(rejudged)
    assert scores != before
    for record in second:
        assert _suggested_ratings(record) == [round(s) for s in scores[record["external_id"]]]
        assert {s["agent"] for s in record["suggestions"]} == {"judge-70b"}
        assert record["metadata"]["judge_rating_1"] == scores[record["external_id"]][0]


def _scores(settings: Settings) -> dict[str, list[float]]:
    return {r["prompt_id"]: r["scores"] for r in _read(settings, "ratings").to_dicts()}


def _suggested_ratings(record: dict[str, Any]) -> list[int]:
    return [s["value"] for s in record["suggestions"] if isinstance(s["value"], int)]


@pytest.mark.slow
def test_human_labels_decide_the_final_pair_and_the_sensor_asks_for_their_batch(
    tmp_path: Path, llm: FakeServer, argilla: ArgillaServer
) -> None:
    settings = _settings(tmp_path, llm, argilla.url, "loop")
    for partition in ("batch-00000", "batch-00001"):
        assert _run(settings, partition=partition).success
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    first = sensor(_sensor_context(settings, None))
    assert isinstance(first, dg.SkipReason) or not first.run_requests

    judged = _a_judged_pair(settings, "batch-00001")
    assert _published(settings, judged["prompt_id"])["pair_source"] == "judge"
    chosen, rejected = _slot(settings, judged["chosen_model"]), _slot(settings, judged["rejected_model"])
    with argilla.client() as owner, _annotator(owner, "annotator1") as annotator:
        [record] = [r for r in _records(owner, "loop") if r["external_id"] == judged["prompt_id"]]
        ratings = [0, 0]
        ratings[rejected], ratings[chosen] = 5, 1
        _respond(annotator, record["id"], ratings, [rejected, chosen])
        ratings[rejected], ratings[chosen] = 4, 2
        _respond(owner, record["id"], ratings, [rejected, chosen])

    cursor = first.cursor if isinstance(first, dg.SensorResult) else None
    second = sensor(_sensor_context(settings, cursor))
    assert [r.partition_key for r in second.run_requests] == ["batch-00001"]
    third = sensor(_sensor_context(settings, second.cursor))
    assert isinstance(third, dg.SkipReason) or not third.run_requests

    review = _run(settings, REVIEW_JOB_NAME, "batch-00001")
    assert review.success
    events = [e.event_specific_data.materialization for e in review.get_asset_materialization_events()]
    [shown] = [m for m in events if m.asset_key.to_user_string() == "human_feedback"]
    agreement = shown.metadata["judge_human_agreement"].value
    # the reviewers reversed the judge's order on the one prompt they labelled
    assert (agreement["prompts"], agreement["pairs"], agreement["agreed"]) == (1, 1, 0)
    assert (agreement["pairwise_accuracy"], agreement["kendall_tau"], agreement["top_agreement"]) == (0.0, -1.0, 0.0)
    labels = _read(settings, "human_feedback", "batch-00001")
    assert labels.height == BATCH_SIZE
    row = labels.filter(pl.col("prompt_id") == judged["prompt_id"]).row(0, named=True)
    assert row["status"] == "ok" and row["submitted"] == 2 and row["argilla_record_id"] == record["id"]
    assert row["human_ratings"][rejected] == 4.5 and row["human_ratings"][chosen] == 1.5
    assert row["rating_counts"] == [2, 2] and row["ranking_count"] == 2
    assert row["human_ranking"][rejected] == 1.0
    others = labels.filter(pl.col("prompt_id") != judged["prompt_id"])
    assert set(others["reason"]) == {"no_human_response"}

    final = _read(settings, "preference_pairs", "batch-00001")
    assert final.height == BATCH_SIZE
    human = final.filter(pl.col("pair_source") == "human").row(0, named=True)
    assert (human["prompt_id"], human["status"]) == (judged["prompt_id"], "ok")
    assert human["chosen_model"] == judged["rejected_model"]
    assert human["rejected_model"] == judged["chosen_model"]
    assert (human["chosen_rating"], human["rejected_rating"], human["margin"]) == (4.5, 1.5, 3.0)
    assert human["chosen"][-1]["content"] == judged["rejected"][-1]["content"]
    judge_rows = final.filter(pl.col("pair_source") == "judge").drop("pair_source")
    dpo = _read(settings, "dpo_pairs", "batch-00001").filter(pl.col("prompt_id") != judged["prompt_id"])
    assert judge_rows.sort("prompt_id").equals(dpo.sort("prompt_id"))

    # The review job republished the set: the pair the reviewers flipped, and a card that counts it.
    released = _published(settings, judged["prompt_id"])
    assert (released["pair_source"], released["chosen_model"]) == ("human", judged["rejected_model"])
    assert released["chosen"][-1]["content"] == judged["rejected"][-1]["content"]
    card = (Path(settings.storage_dir) / "published" / "README.md").read_text()
    assert "Decided by: human 1, judge " in card and "1 of " in card


def _published(settings: Settings, prompt_id: str) -> dict[str, Any]:
    published = pl.read_parquet(Path(settings.storage_dir) / "published" / "data" / "train.parquet")
    [row] = published.filter(pl.col("prompt_id") == prompt_id).to_dicts()
    return row


def _cli(tmp_path: Path, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = os.environ | {"PREF_ASSETS_CONFIG": str(write_settings(settings, tmp_path / "pref_assets.yaml")),
                        "DAGSTER_HOME": str(home)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "pref_assets.cli", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


@pytest.mark.slow
def test_batches_judged_before_argilla_was_set_are_pushed_and_their_labels_pulled(
    tmp_path: Path, llm: FakeServer, argilla: ArgillaServer
) -> None:
    offline = _settings(tmp_path, llm, None, "late")
    for partition in ("batch-00000", "batch-00001"):
        assert _run(offline, partition=partition).success
    assert not _read(offline, "argilla_records")["pushed"].any()
    online = _settings(tmp_path, llm, argilla.url, "late")

    for _ in range(2):  # pushing again changes nothing
        push = _cli(tmp_path, online, "review", "push")
        assert push.returncode == 0, push.stdout + push.stderr
        with argilla.client() as client:
            assert len(_records(client, "late")) == N_PROMPTS
    assert "push batch-00001 (2 of 2)" in push.stdout and "argilla_records [batch-00001]: ok 4" in push.stdout

    judged = _a_judged_pair(online, "batch-00001")
    chosen, rejected = _slot(online, judged["chosen_model"]), _slot(online, judged["rejected_model"])
    with argilla.client() as owner:
        [record] = [r for r in _records(owner, "late") if r["external_id"] == judged["prompt_id"]]
        ratings = [0, 0]
        ratings[rejected], ratings[chosen] = 5, 1
        _respond(owner, record["id"], ratings, [rejected, chosen])

    pull = _cli(tmp_path, online, "review", "pull")
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert _published(online, judged["prompt_id"])["pair_source"] == "human"
    assert _read(online, "human_feedback", "batch-00000")["reason"].to_list() == ["no_human_response"] * BATCH_SIZE


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_outage_and_wrong_key_fail_clearly_and_a_rerun_duplicates_nothing(
    tmp_path: Path, llm: FakeServer, argilla: ArgillaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    result = _run(_settings(tmp_path, llm, down, "outage"))
    assert not result.success
    message = _failure(result)
    assert message.startswith(f"Argilla: Argilla at {down} is unreachable (ConnectError")
    assert "2 attempts" in message

    settings = _settings(tmp_path, llm, argilla.url, "outage")
    assert _run(settings).success
    with argilla.client() as client:
        assert len(_records(client, "outage")) == BATCH_SIZE

    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    result = _run(settings)
    assert not result.success
    message = _failure(result)
    assert message == f"Argilla: Argilla at {argilla.url} rejected the API key in ${KEY_ENV} (HTTP 401)"
    assert WRONG_KEY not in message
    review = _run(settings, REVIEW_JOB_NAME)
    assert not review.success and "rejected the API key" in _failure(review)

    monkeypatch.setenv(KEY_ENV, argilla.api_key)
    assert _run(settings).success and _run(settings, REVIEW_JOB_NAME).success
    with argilla.client() as client:
        assert len(_records(client, "outage")) == BATCH_SIZE
    for path in Path(settings.storage_dir).rglob("*.parquet"):
        stored = path.read_bytes()
        assert WRONG_KEY.encode() not in stored and argilla.api_key.encode() not in stored


def _foreign_dataset(client: httpx.Client, name: str, rating_options: int, *, publish: bool) -> None:
    """Create a dataset as another tool (or an interrupted run) would have: an instruction and one rating."""
    dataset = client.post("/datasets", json={"name": name, "workspace_id": _workspace_id(client)}).json()
    field = {"name": "instruction", "title": "I", "required": True, "settings": {"type": "text"}}
    client.post(f"/datasets/{dataset['id']}/fields", json=field).raise_for_status()
    options = [{"value": v} for v in range(1, rating_options + 1)]
    rating = {
        "name": "rating_1",
        "title": "R",
        "required": True,
        "settings": {"type": "rating", "options": options},
    }
    client.post(f"/datasets/{dataset['id']}/questions", json=rating).raise_for_status()
    if publish:
        client.put(f"/datasets/{dataset['id']}/publish").raise_for_status()


@pytest.mark.slow
def test_an_incompatible_existing_dataset_is_named(tmp_path: Path, llm: FakeServer, argilla: ArgillaServer) -> None:
    with argilla.client() as client:
        _foreign_dataset(client, "other", 10, publish=True)
    message = _failure(_run(_settings(tmp_path, llm, argilla.url, "other")))
    assert f"dataset argilla/other at {argilla.url} exists with other settings" in message
    assert "fields: missing ['response_1', 'response_2']" in message
    assert "questions 'rating_1': has type rating, options [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in message


@pytest.mark.slow
def test_a_dataset_left_half_created_is_completed(tmp_path: Path, llm: FakeServer, argilla: ArgillaServer) -> None:
    with argilla.client() as client:
        _foreign_dataset(client, "half", 5, publish=False)
        settings = _settings(tmp_path, llm, argilla.url, "half")
        assert _run(settings).success
        assert len(_records(client, "half")) == BATCH_SIZE
        dataset = client.get(f"/datasets/{_dataset_id(client, 'half')}").json()
    assert dataset["status"] == "ready"


def test_without_argilla_the_graph_materializes_and_the_judge_decides(tmp_path: Path, llm: FakeServer) -> None:
    settings = _settings(tmp_path, llm, None, "unused")
    assert _run(settings).success and _run(settings, REVIEW_JOB_NAME).success
    labels = _read(settings, "human_feedback")
    assert labels.height == BATCH_SIZE
    assert {r.split(":")[0] for r in labels["reason"]} == {"argilla_not_configured"}
    final = _read(settings, "preference_pairs")
    assert set(final["pair_source"]) == {"judge"}
    assert final.drop("pair_source").equals(_read(settings, "dpo_pairs"))
    sensor = build_definitions(settings).resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_sensor_skips_without_argilla_and_names_an_unreachable_one(tmp_path: Path, llm: FakeServer) -> None:
    offline = _settings(tmp_path, llm, None, "unused")
    sensor = build_definitions(offline).resolve_sensor_def(SENSOR_NAME)
    skipped = sensor(_sensor_context(offline, None))
    assert isinstance(skipped, dg.SkipReason) and "no Argilla URL" in skipped.skip_message

    down = f"http://127.0.0.1:{_closed_port()}"
    unreachable = _settings(tmp_path, llm, down, "unused")
    with pytest.raises(ArgillaError, match=f"Argilla at {down} is unreachable"):
        build_definitions(unreachable).resolve_sensor_def(SENSOR_NAME)(_sensor_context(unreachable, None))
