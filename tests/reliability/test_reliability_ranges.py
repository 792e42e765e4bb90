"""The reliability guarantees in a run covering three batches (a backfill with ``backfill.partitions_per_run``):
every prompt at every stage per batch, a lost row found by its batch's ledger, kill -9 resume from the request
cache, and poisoned requests failing only their own rows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from range_support import range_command, run_range
from reliability_support import (
    PIPELINE_STAGES,
    driver_command,
    driver_env,
    failure_messages,
    fake_settings,
    read_stage,
    run_partition,
    write_prompts,
)
from test_reliability_crash_resume import _kill_when, _settle

from pref_assets.clients.cache import RequestCache
from pref_assets.clients.runner import to_request
from pref_assets.core.generation import plan_generations
from pref_assets.core.rows import PromptRow
from pref_assets.defs.checks import prompt_counts
from pref_assets.defs.schemas import from_frame
from pref_assets.settings import Settings
from pref_assets.testing.fake_openai import FakeServer, poisoned, run_fake_openai

BATCH = 20
BATCHES = ("batch-00000", "batch-00001", "batch-00002")
RANGE = f"{BATCHES[0]}...{BATCHES[-1]}"
ALL_CALLS = 3 * BATCH * len(BATCHES)


def _settings(server: FakeServer, work: Path, **endpoint: object) -> Settings:
    source = work / "prompts.jsonl"
    write_prompts(source, BATCH * len(BATCHES))
    return fake_settings(server.base_url, work / "store", source, batch_size=BATCH, endpoint=endpoint or None)


def test_every_prompt_is_at_every_stage_of_every_batch(tmp_path: Path) -> None:
    with run_fake_openai(seed=3) as server:
        settings = _settings(server, tmp_path)
        result = run_range(settings, BATCHES[0], BATCHES[-1])
        assert server.stats()["requests"] == ALL_CALLS
    ledgers = {(e.asset_key.to_user_string(), e.partition): e.passed
               for e in result.get_asset_check_evaluations() if e.check_name == "ledger"}  # fmt: skip
    assert all(ledgers.values()), ledgers
    assert {(stage, b) for stage in PIPELINE_STAGES[1:] for b in BATCHES} <= ledgers.keys()
    for batch in BATCHES:
        prompts = read_stage(settings.storage_dir, "prompts", batch)
        assert prompts.height == BATCH and prompts["row_id"].str.starts_with(f"{batch}#").all()
        for stage in PIPELINE_STAGES[2:]:
            assert set(read_stage(settings.storage_dir, stage, batch)["row_id"]) == set(prompts["row_id"])


def test_a_row_lost_in_one_batch_fails_that_batch_ledger_and_the_others_finish(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(seed=4) as server:
        settings = _settings(server, tmp_path)
        assert run_range(settings, BATCHES[0], BATCHES[-1], instance).success
        lost = Path(settings.storage_dir) / "prompts" / f"{BATCHES[1]}.parquet"
        pl.read_parquet(lost).slice(1).write_parquet(lost)  # the batch's first prompt row is gone
        later = [dg.AssetKey(stage) for stage in PIPELINE_STAGES[1:]]
        result = run_range(settings, BATCHES[0], BATCHES[-1], instance, asset_selection=later, raise_on_error=False)
    assert result.success, failure_messages(result)
    ledgers = {e.partition: e for e in result.get_asset_check_evaluations()
               if e.check_name == "ledger" and e.asset_key.to_user_string() == PIPELINE_STAGES[1]}  # fmt: skip
    assert not ledgers[BATCHES[1]].passed and ledgers[BATCHES[1]].metadata["missing_prompts"].value == 1
    assert ledgers[BATCHES[0]].passed and ledgers[BATCHES[2]].passed
    store = Path(settings.storage_dir)
    held = read_stage(store, "dpo_pairs", BATCHES[1])
    assert held.height == BATCH - 1 and held["reason"].str.starts_with("held_back: ").all()
    assert read_stage(store, "dpo_pairs", BATCHES[2]).height == BATCH


def test_each_batch_ledger_counts_its_latest_prompts_record() -> None:
    instance = dg.DagsterInstance.ephemeral()

    def record(batch: str, rows: int) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("prompts", partition=batch, metadata={"dagster/row_count": rows})
        )

    record(BATCHES[0], 5)
    record(BATCHES[1], 7)
    record(BATCHES[0], 6)
    for rows in range(8, 16):  # newer records of one batch fill the first page
        record(BATCHES[2], rows)
    counts = prompt_counts(instance, [*BATCHES, "batch-00003"])
    assert counts == {BATCHES[0]: 6, BATCHES[1]: 7, BATCHES[2]: 15, "batch-00003": None}


@pytest.mark.slow
def test_a_killed_range_run_resumes_from_the_cache(tmp_path: Path) -> None:
    with run_fake_openai(latency=0.3, seed=21) as server:
        settings = _settings(server, tmp_path, max_concurrency=8)
        command = range_command(driver_command(settings, RANGE, tmp_path / "never-written.json", tmp_path))
        with (tmp_path / "killed-run.log").open("wb") as log:
            process = subprocess.Popen(command, env=driver_env(), stdout=log, stderr=subprocess.STDOUT)
            # Mid-generations: answers of every batch are in flight through one request loop.
            _kill_when(process, server, lambda s: s["by_status"].get("200", 0) >= 2 * BATCH * len(BATCHES) // 2)
        settled = _settle(server)
        store = Path(settings.storage_dir)
        assert not list((store / "generations_by_model").glob("*.parquet")), "the kill came after generations"
        cache = RequestCache(settings.cache_path())
        stored = cache.count()
        cache.close()
        assert run_range(settings, BATCHES[0], BATCHES[-1]).success
        final = server.stats()
    assert final["requests"] - settled["requests"] == ALL_CALLS - stored
    for batch in BATCHES:
        pairs = read_stage(store, "dpo_pairs", batch)
        assert pairs.height == BATCH and pairs.filter(pl.col("status") == "failed").is_empty()


@pytest.mark.slow
def test_poisoned_requests_fail_only_their_rows_in_a_range_run(tmp_path: Path) -> None:
    poison, attempts = 0.05, 2
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(poison=poison, latency=0.01) as server:
        settings = _settings(server, tmp_path, max_concurrency=16, max_attempts=attempts)
        first = run_range(settings, BATCHES[0], BATCHES[-1], instance, raise_on_error=False)
        assert first.success, failure_messages(first)
        sent = server.stats()
        server.reset()
        second = run_range(settings, BATCHES[0], BATCHES[-1], instance, raise_on_error=False)
        assert second.success, failure_messages(second)
        resent = server.stats()
    store = Path(settings.storage_dir)
    expected_total = 0
    for batch in BATCHES:
        prompts = from_frame(read_stage(store, "prompts", batch), PromptRow)
        planned = plan_generations(prompts, settings.generators)
        expected = {(x.prompt.prompt_id, x.model) for x in planned if poisoned(to_request(x.call).body(), poison)}
        failed = read_stage(store, "generations_by_model", batch).filter(pl.col("status") != "ok")
        assert {(r["prompt_id"], r["model"]) for r in failed.to_dicts()} == expected
        expected_total += len(expected)
    assert expected_total > 0
    assert resent["by_status"] == {"500": sent["by_status"]["500"]}


def test_one_batch_alone_still_runs_as_a_single_partition(tmp_path: Path) -> None:
    with run_fake_openai(seed=3) as server:
        settings = _settings(server, tmp_path)
        result = run_partition(settings, BATCHES[1])
    assert result.success
    assert {e.partition for e in result.get_asset_check_evaluations()} == {BATCHES[1]}
    assert not (Path(settings.storage_dir) / "prompts" / f"{BATCHES[0]}.parquet").exists()
