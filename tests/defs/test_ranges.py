"""A run covering several batches (a backfill with ``backfill.partitions_per_run``): the backfill policies, each
batch's own file, metadata and check results, one request loop for every batch's calls, and a batch that fails its
ledger check held back without stopping the others."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from range_support import run_range
from reliability_support import fake_settings, read_stage, write_prompts

from pref_assets.clients.runner import to_request
from pref_assets.core.generation import plan_generations
from pref_assets.core.rows import PromptRow
from pref_assets.definitions import build_definitions
from pref_assets.defs.schemas import from_frame
from pref_assets.defs.stages import common
from pref_assets.settings import BackfillSettings, CacheSettings, EndpointSettings, JudgeSettings, Settings
from pref_assets.testing.fake_openai import poisoned, run_fake_openai

BATCH = 10
BATCHES = ("batch-00000", "batch-00001", "batch-00002")
POISON = 0.3


def _settings(base_url: str, work: Path, **extra: Any) -> Settings:
    source = work / "prompts.jsonl"
    write_prompts(source, BATCH * len(BATCHES))
    return fake_settings(base_url, work / "store", source, batch_size=BATCH, **extra)


def _policies(settings: Settings) -> set[dg.BackfillPolicy | None]:
    graph = build_definitions(settings).resolve_asset_graph()
    return {node.backfill_policy for node in graph.asset_nodes if node.is_partitioned}


@pytest.mark.parametrize(
    ("backfill", "expected"),
    [
        (BackfillSettings(), dg.BackfillPolicy.multi_run(10)),
        (BackfillSettings(partitions_per_run=4), dg.BackfillPolicy.multi_run(4)),
        (BackfillSettings(single_run=True), dg.BackfillPolicy.single_run()),
    ],
)
def test_every_batch_asset_has_the_configured_backfill_policy(
    tmp_path: Path, backfill: BackfillSettings, expected: dg.BackfillPolicy
) -> None:
    assert _policies(_settings("http://127.0.0.1:9/v1", tmp_path, backfill=backfill)) == {expected}


def test_each_batch_has_its_own_file_metadata_and_checks_and_one_request_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops: list[int] = []
    run_calls = common.run_calls
    counted = lambda calls, *a, **k: loops.append(len(calls)) or run_calls(calls, *a, **k)  # noqa: E731
    monkeypatch.setattr(common, "run_calls", counted)
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(seed=5) as server:
        settings = _settings(server.base_url, tmp_path)
        assert run_range(settings, BATCHES[0], BATCHES[-1], instance).success
    # Generations of all three batches in one loop, then every judge call in one loop.
    assert loops == [2 * BATCH * len(BATCHES), BATCH * len(BATCHES)]
    for batch in BATCHES:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("prompts"), asset_partitions=[batch]), limit=1
        ).records[0]
        assert record.asset_materialization.metadata["dagster/row_count"].value == BATCH
        prompts = read_stage(settings.storage_dir, "prompts", batch)
        assert prompts["row_id"].to_list() == [f"{batch}#{i}" for i in range(BATCH)]
        for stage in ("generations_by_model", "ratings", "dpo_pairs"):
            key = dg.AssetCheckKey(dg.AssetKey(stage), "ledger")
            latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [key], partition_filter=_partition(batch)
            )
            assert latest[key].status.value == "SUCCEEDED"


def _partition(batch: str) -> Any:
    from dagster._core.storage.event_log.base import PartitionKeyFilter

    return PartitionKeyFilter(key=batch)


def _worst_batch(settings: Settings) -> tuple[str, float, float]:
    """Return the batch with most poisoned generation requests, its failure rate and the next highest rate."""
    rates = {}
    for batch in BATCHES:
        prompts = from_frame(read_stage(settings.storage_dir, "prompts", batch), PromptRow)
        planned = plan_generations(prompts, settings.generators)
        rates[batch] = sum(poisoned(to_request(x.call).body(), POISON) for x in planned) / len(planned)
    worst, *rest = sorted(rates, key=rates.get, reverse=True)
    return worst, rates[worst], max(rates[b] for b in rest)


def test_a_batch_failing_its_ledger_is_held_back_and_the_others_finish(tmp_path: Path) -> None:
    with run_fake_openai(poison=POISON, latency=0.01) as generators, run_fake_openai(seed=5) as judge:
        settings = _settings(generators.base_url, tmp_path, endpoint={"max_attempts": 1})
        judge_endpoint = EndpointSettings(name="judge", base_url=judge.base_url, structured_output="json_schema")
        settings = settings.model_copy(update={
            "endpoints": [*settings.endpoints, judge_endpoint],
            "judge": JudgeSettings(name="judge", endpoint="judge", model="judge-model"),
        })  # fmt: skip
        # Learn each batch's poisoned share from its prompts, then set the limit between the worst batch and the rest.
        run_range(settings.model_copy(update={"max_failure_rate": 1.0}), BATCHES[0], BATCHES[-1])
        held, worst, next_rate = _worst_batch(settings)
        assert worst > next_rate
        judge.reset()
        limit = (worst + next_rate) / 2
        limited = settings.model_copy(update={"max_failure_rate": limit, "cache": CacheSettings(enabled=False)})
        result = run_range(limited, BATCHES[0], BATCHES[-1], raise_on_error=False)
        judged = judge.stats()["requests"]
    assert result.success
    ledgers = {(e.asset_key.to_user_string(), e.partition): e for e in result.get_asset_check_evaluations()
               if e.check_name == "ledger"}  # fmt: skip
    assert not ledgers["generations_by_model", held].passed
    assert "held back" in ledgers["generations_by_model", held].description
    others = [b for b in BATCHES if b != held]
    assert all(ledgers["generations_by_model", b].passed for b in others)
    store = Path(settings.storage_dir)
    for stage in ("grouped", "ratings", "dpo_pairs", "argilla_records"):
        rows = read_stage(store, stage, held)
        assert rows.height == BATCH and (rows["status"] == "failed").all()
        assert rows["reason"].str.starts_with("held_back: ").all()
        for batch in others:
            assert read_stage(store, stage, batch).height == BATCH
    ok_pairs = sum(read_stage(store, "dpo_pairs", b).filter(pl.col("status") == "ok").height for b in others)
    assert ok_pairs > 0
    # The held batch cost no judge call: every judge request was for a prompt of another batch.
    rated = sum(read_stage(store, "ratings", b).filter(pl.col("status") == "ok").height for b in others)
    assert judged == rated
