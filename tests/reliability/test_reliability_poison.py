"""Requests that always fail (3% of bodies, chosen by a hash of the body) fail only their own rows: the batch
succeeds, a rerun sends only those requests again and succeeds too. An endpoint nobody listens on still parks
within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from reliability_support import (
    closed_port,
    failure_messages,
    fake_settings,
    read_stage,
    run_partition,
    write_prompts,
)

from pref_assets.clients.llm import ChatClient
from pref_assets.clients.runner import EndpointParkedError, run_calls, to_request
from pref_assets.core.calls import Call
from pref_assets.core.generation import plan_generations
from pref_assets.core.rows import PromptRow
from pref_assets.defs.schemas import from_frame
from pref_assets.testing.fake_openai import POISON_MESSAGE, poisoned, run_fake_openai

PARTITION = "batch-00000"
BATCH = 200
POISON = 0.03
ATTEMPTS = 4
ENDPOINT = {"max_concurrency": 16, "max_attempts": ATTEMPTS}
STAGES = ("generations_by_model", "ratings", "dpo_pairs")


@pytest.mark.slow
def test_poisoned_requests_fail_only_their_rows_and_a_rerun_resends_only_them(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, BATCH)
    store = tmp_path / "store"
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(poison=POISON, latency=0.01) as server:
        # max_failure_rate keeps its default (0.5): 3% of failed rows pass the ledger checks.
        settings = fake_settings(server.base_url, store, source, batch_size=BATCH, endpoint=ENDPOINT)
        first = run_partition(settings, PARTITION, instance, raise_on_error=False)
        assert first.success, failure_messages(first)
        assert all(c.passed for c in first.get_asset_check_evaluations())
        sent = server.stats()
        before = {stage: _outcomes(store, stage) for stage in STAGES}
        server.reset()
        second = run_partition(settings, PARTITION, instance, raise_on_error=False)
        assert second.success, failure_messages(second)
        resent = server.stats()

    prompts = from_frame(read_stage(store, "prompts", PARTITION), PromptRow)
    planned = plan_generations(prompts, settings.generators)
    expected = {(x.prompt.prompt_id, x.model) for x in planned if poisoned(to_request(x.call).body(), POISON)}
    assert 0.01 * len(planned) < len(expected) < 0.06 * len(planned)
    gens = read_stage(store, "generations_by_model", PARTITION)
    failed = gens.filter(pl.col("status") != "ok")
    assert {(r["prompt_id"], r["model"]) for r in failed.to_dicts()} == expected
    assert set(failed["reason"].to_list()) == {f"http_error: HTTP 500: {POISON_MESSAGE}"}
    assert set(failed["attempts"].to_list()) == {ATTEMPTS}

    # Every 500 came from a poisoned body, tried exactly ATTEMPTS times; judge requests can be poisoned too.
    poisoned_calls, rest = divmod(sent["by_status"]["500"], ATTEMPTS)
    assert rest == 0 and poisoned_calls >= len(expected)
    ratings = read_stage(store, "ratings", PARTITION)
    one_answer = {pid for pid, _ in expected}
    for row in ratings.filter(pl.col("failed_stage") == "ratings").to_dicts():
        if row["reason"].startswith("judge_request_failed"):
            assert POISON_MESSAGE in row["reason"]
        else:
            assert row["reason"] == "fewer_than_two_answers" and row["prompt_id"] in one_answer
    assert ratings.filter(pl.col("status") == "ok").height >= 0.85 * BATCH

    # The rerun answers everything else from the request cache and sends only the poisoned bodies, again.
    assert resent["by_status"] == {"500": sent["by_status"]["500"]}
    assert resent["distinct_bodies"] == poisoned_calls
    assert {stage: _outcomes(store, stage) for stage in STAGES} == before


def _outcomes(store: Path, stage: str) -> list[tuple[str | None, ...]]:
    frame = read_stage(store, stage, PARTITION)
    keys = ["prompt_id", "model"] if stage == "generations_by_model" else ["prompt_id"]
    return sorted(frame.select(*keys, "status", "reason").iter_rows())


def test_an_endpoint_nobody_listens_on_is_parked_within_seconds(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    calls = [Call("dead", "m", ({"role": "user", "content": f"q{i}"},)) for i in range(BATCH)]
    started = time.monotonic()
    with pytest.raises(EndpointParkedError, match=r"parked after \d+ failed attempts in a row; last: ConnectError"):
        run_calls(calls, lambda name: ChatClient(url, max_concurrency=16))
    parked_after = time.monotonic() - started
    print(f"\ndead endpoint parked after {parked_after:.2f} s")
    assert parked_after < 5

    source = tmp_path / "prompts.jsonl"
    write_prompts(source, BATCH)
    settings = fake_settings(url, tmp_path / "store", source, batch_size=BATCH, endpoint=ENDPOINT, name="dead")
    started = time.monotonic()
    result = run_partition(settings, PARTITION, raise_on_error=False)
    assert not result.success
    assert any("endpoint(s) dead: endpoint parked after" in m for m in failure_messages(result))
    assert time.monotonic() - started < 20
