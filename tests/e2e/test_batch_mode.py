"""Batch mode against the fake server's Batch API, in one process: the step submits and yields nothing, the
``llm_batches`` sensor collects and requests the next runs, and the pairs equal those of the online path."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from pref_assets.clients.batch_store import JobStore
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.batches import SENSOR_NAME, store_path
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

N = 12
PARTITION = "batch-00000"
FAST = {"validating_s": 0.1, "in_progress_s": 0.3, "finalizing_s": 0.1}


def batch_settings(
    base_url: str,
    store: Path,
    *,
    mode: str = "batch",
    max_failure_rate: float = 0.5,
    max_reasks: int = 0,
    budget: float | None = None,
    **endpoint: Any,
) -> Settings:
    """Return settings of a two-generator, one-judge pipeline on one endpoint of the fake server."""
    return Settings(
        storage_dir=str(store),
        max_failure_rate=max_failure_rate,
        budget_usd_per_step=budget,
        batch_size=N,
        source=SourceSettings(limit=N),
        endpoints=[
            EndpointSettings(
                name="fake",
                base_url=base_url,
                structured_output="json_schema",
                mode=mode,
                batch_poll_interval_s=1,
                **endpoint,
            )
        ],
        generators=[
            ModelSettings(
                name="a",
                endpoint="fake",
                model="model-a",
                params={"temperature": 0.2},
                price_input_per_million=2.0,
                price_output_per_million=8.0,
            ),
            ModelSettings(
                name="b",
                endpoint="fake",
                model="model-b",
                params={"temperature": 0.9},
                price_input_per_million=2.0,
                price_output_per_million=8.0,
            ),
        ],
        judge=JudgeSettings(
            name="judge",
            endpoint="fake",
            model="judge",
            max_reasks=max_reasks,
            price_input_per_million=2.0,
            price_output_per_million=8.0,
        ),
    )


def run_through_sensor(settings: Settings, instance: dg.DagsterInstance, *, timeout: float = 90.0) -> list[str]:
    """Run the job for one batch, then evaluate the sensor and run what it requests until nothing waits; return
    the asset keys of each requested run."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(JOB_NAME)
    assert job.execute_in_process(partition_key=PARTITION, instance=instance).success
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    requested: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resources = {"llm": defs.resources["llm"]}
        with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            result = sensor(context)
        runs = result.run_requests if isinstance(result, dg.SensorResult) else []
        for request in runs or []:
            requested.append(",".join(k.to_user_string() for k in request.asset_selection))
            assert job.execute_in_process(
                partition_key=request.partition_key, instance=instance, asset_selection=request.asset_selection
            ).success
        if (Path(settings.storage_dir) / "dpo_pairs" / f"{PARTITION}.parquet").is_file():
            return requested
        time.sleep(0.5)
    raise AssertionError(f"the pairs never came; runs requested: {requested}")


def online_pairs(server: FakeServer, store: Path) -> pl.DataFrame:
    settings = batch_settings(server.base_url, store, mode="online")
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    assert job.execute_in_process(partition_key=PARTITION, instance=dg.DagsterInstance.ephemeral()).success
    return pl.read_parquet(store / "dpo_pairs" / f"{PARTITION}.parquet")


def batch_counters(server: FakeServer) -> dict[str, Any]:
    return dict(server.client.get(f"{server.root_url}/_batches").json())


PAIR_COLUMNS = ["prompt_id", "chosen", "rejected", "chosen_model", "rejected_model", "status", "reason"]


def test_generations_then_judge_then_pairs_through_the_sensor_equal_the_online_pairs(tmp_path: Path) -> None:
    with run_fake_openai(seed=5, batch=json.dumps(FAST)) as server:
        expected = online_pairs(server, tmp_path / "online")
        server.reset()
        settings = batch_settings(server.base_url, tmp_path / "batch")
        instance = dg.DagsterInstance.ephemeral()
        requested = run_through_sensor(settings, instance)
        assert server.stats()["requests"] == 0  # nothing went online
        counters = batch_counters(server)
    assert counters["batches"] == 2 and counters["lines"] == 3 * N and counters["repeated_after_success"] == 0
    first, second = (set(r.split(",")) for r in requested)
    assert {"generations_by_model", "grouped", "ratings", "dpo_pairs"} <= first
    assert "ratings" in second and "generations_by_model" not in second
    got = pl.read_parquet(tmp_path / "batch" / "dpo_pairs" / f"{PARTITION}.parquet")
    assert got.select(PAIR_COLUMNS).sort("prompt_id").equals(expected.select(PAIR_COLUMNS).sort("prompt_id"))
    assert got.filter(pl.col("status") == "ok").height > 0
    store = JobStore(store_path(settings.cache_path()))
    jobs = store.jobs()
    store.close()
    assert [j.state for j in jobs] == ["collected", "collected"]
    tokens = sum(j.prompt_tokens * 1.0 + j.completion_tokens * 4.0 for j in jobs) / 1e6  # half of 2 and 8 USD
    assert sum(j.cost_usd for j in jobs) == pytest.approx(tokens)
    gens = instance.get_latest_materialization_event(dg.AssetKey("generations_by_model"))
    assert gens is not None and gens.asset_materialization is not None
    metadata = gens.asset_materialization.metadata
    assert metadata["batch_completed"].value == 2 * N and metadata["batch_cost_usd"].value > 0


def test_failed_lines_are_resubmitted_and_a_line_out_of_attempts_fails_with_the_provider_error(
    tmp_path: Path,
) -> None:
    knobs = FAST | {"error_fraction": 0.4}
    with run_fake_openai(seed=5, batch=json.dumps(knobs)) as server:
        settings = batch_settings(server.base_url, tmp_path / "retry", batch_max_attempts=2)
        run_through_sensor(settings, dg.DagsterInstance.ephemeral())
        counters = batch_counters(server)
    # the fake fails a body once: every failed line was answered on its second attempt
    assert counters["batches"] > 2 and counters["repeated_after_success"] == 0
    gens = pl.read_parquet(tmp_path / "retry" / "generations_by_model" / f"{PARTITION}.parquet")
    assert gens.height == 2 * N and (gens["status"] == "ok").all()

    with run_fake_openai(seed=5, batch=json.dumps(knobs)) as server:
        settings = batch_settings(server.base_url, tmp_path / "final", batch_max_attempts=1, max_failure_rate=0.9)
        run_through_sensor(settings, dg.DagsterInstance.ephemeral())
    gens = pl.read_parquet(tmp_path / "final" / "generations_by_model" / f"{PARTITION}.parquet")
    failed = gens.filter(pl.col("status") == "failed")
    assert gens.height == 2 * N and failed.height > 0
    assert failed["reason"].str.contains("batch_failed: batch: HTTP 500: the fake server failed this line").all()


def test_an_expired_job_resubmits_only_the_lines_it_did_not_finish(tmp_path: Path) -> None:
    knobs = FAST | {"expire_first": 1, "expire_done_fraction": 0.5}
    with run_fake_openai(seed=5, batch=json.dumps(knobs)) as server:
        settings = batch_settings(server.base_url, tmp_path)
        run_through_sensor(settings, dg.DagsterInstance.ephemeral())
        counters = batch_counters(server)
    store = JobStore(store_path(settings.cache_path()))
    first, second, *_ = store.jobs()
    store.close()
    assert first.status == "expired" and first.completed == N and first.expired == N
    assert second.attempt == 2 and second.total == N  # only the half that expired
    assert counters["repeated_after_success"] == 0 and counters["lines"] == 2 * N + N + N


def test_online_and_batch_share_the_cache(tmp_path: Path) -> None:
    """Answers paid online are not sent again in batch mode."""
    with run_fake_openai(seed=5, batch=json.dumps(FAST)) as server:
        online_pairs(server, tmp_path)
        settings = batch_settings(server.base_url, tmp_path)
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        assert job.execute_in_process(partition_key=PARTITION, instance=dg.DagsterInstance.ephemeral()).success
        assert batch_counters(server)["batches"] == 0


def test_a_step_over_several_batches_submits_one_job_and_each_batch_runs_on(tmp_path: Path) -> None:
    with run_fake_openai(seed=5, batch=json.dumps(FAST)) as server:
        settings = batch_settings(server.base_url, tmp_path).model_copy(
            update={"batch_size": 4, "source": SourceSettings(limit=12)}
        )
        defs = build_definitions(settings)
        job, instance = defs.resolve_job_def(JOB_NAME), dg.DagsterInstance.ephemeral()
        keys = [f"batch-0000{i}" for i in range(3)]
        tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
        assert job.execute_in_process(instance=instance, tags=tags).success
        assert batch_counters(server)["batches"] == 1  # one job for the three batches' generations
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        deadline = time.monotonic() + 90
        while not all((tmp_path / "dpo_pairs" / f"{key}.parquet").is_file() for key in keys):
            assert time.monotonic() < deadline
            time.sleep(0.5)
            with dg.build_sensor_context(instance=instance, resources={"llm": defs.resources["llm"]},
                                         definitions=defs) as context:  # fmt: skip
                result = sensor(context)
            for request in result.run_requests if isinstance(result, dg.SensorResult) else []:
                assert job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                              asset_selection=request.asset_selection).success  # fmt: skip
        counters = batch_counters(server)
    assert counters["batches"] == 4 and counters["lines"] == 3 * 12 and counters["repeated_after_success"] == 0


def test_lines_out_of_batch_attempts_go_online_with_the_fallback(tmp_path: Path) -> None:
    knobs = FAST | {"error_fraction": 0.3}
    with run_fake_openai(seed=5, batch=json.dumps(knobs)) as server:
        settings = batch_settings(server.base_url, tmp_path, batch_max_attempts=1, batch_fallback="online")
        run_through_sensor(settings, dg.DagsterInstance.ephemeral())
        sent_online = server.stats()["requests"]
        store = JobStore(store_path(settings.cache_path()))
        failed_lines = sum(j.failed for j in store.jobs())
        store.close()
    gens = pl.read_parquet(tmp_path / "generations_by_model" / f"{PARTITION}.parquet")
    assert failed_lines > 0 and sent_online == failed_lines  # each failed line once, online
    assert (gens["status"] == "ok").all()


def test_a_ready_partition_is_requested_under_one_run_key_until_its_step_has_run(tmp_path: Path) -> None:
    """A tick whose run was never launched (the daemon stopped after evaluating it) is requested again, under the
    same run key, so Dagster launches it once; after the step has used the answers it is not requested again."""
    with run_fake_openai(seed=5, batch=json.dumps(FAST)) as server:
        settings = batch_settings(server.base_url, tmp_path / "batch")
        instance = dg.DagsterInstance.ephemeral()
        defs = build_definitions(settings)
        job = defs.resolve_job_def(JOB_NAME)
        assert job.execute_in_process(partition_key=PARTITION, instance=instance).success
        sensor = defs.resolve_sensor_def(SENSOR_NAME)

        def tick() -> list[dg.RunRequest]:
            with dg.build_sensor_context(instance=instance, resources={"llm": defs.resources["llm"]},
                                         definitions=defs) as context:  # fmt: skip
                result = sensor(context)
            return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []

        deadline = time.monotonic() + 60
        while not (first := tick()) and time.monotonic() < deadline:
            time.sleep(0.5)
        [request] = first
        [again] = tick()  # the first request was "lost": never launched
        assert again.run_key == request.run_key and again.partition_key == PARTITION
        assert job.execute_in_process(partition_key=PARTITION, instance=instance,
                                      asset_selection=request.asset_selection).success  # fmt: skip
        assert all(r.asset_selection != request.asset_selection for r in tick())


def test_judge_reasks_are_another_job_and_the_first_round_comes_from_the_cache(tmp_path: Path) -> None:
    """A cut-off or unreadable judge answer is re-asked in a job of its own: the ratings step waits a second time,
    the sensor runs it again, and the first round's answers are read from the cache, never submitted again."""
    knobs = FAST | {"judge_truncated": 0.25, "judge_malformed": 0.25}
    with run_fake_openai(seed=5, batch=json.dumps(knobs)) as server:
        settings = batch_settings(server.base_url, tmp_path, max_reasks=1, max_failure_rate=0.9)
        instance = dg.DagsterInstance.ephemeral()
        requested = run_through_sensor(settings, instance)
        assert server.stats()["requests"] == 0  # nothing went online
        counters = batch_counters(server)
    store = JobStore(store_path(settings.cache_path()))
    generations, first_round, reasks = sorted(store.jobs(), key=lambda j: j.recorded_at)
    store.close()
    assert [len(set(r.split(",")) & {"ratings"}) for r in requested] == [1, 1, 1]  # ratings ran three times
    assert "dpo_pairs" in requested[-1] and generations.total == 2 * N

    ratings = pl.read_parquet(tmp_path / "ratings" / f"{PARTITION}.parquet")
    prompts = pl.read_parquet(tmp_path / "prompts" / f"{PARTITION}.parquet")
    assert sorted(ratings["prompt_id"]) == sorted(prompts["prompt_id"])  # every prompt accounted for
    assert ratings.filter(pl.col("status") != "ok")["reason"].is_not_null().all()
    judgements = ratings.select(pl.col("judgements").explode()).unnest("judgements").drop_nulls("attempts")
    again = judgements.filter(pl.col("attempts") == 2)
    assert first_round.total == judgements.height and reasks.total == again.height > 0
    assert again.filter(pl.col("failure").is_null()).height > 0  # re-asks that were read
    assert judgements["cached"].all()  # the last run read both rounds from the cache
    # each line sent once: the first round was never submitted again
    assert counters["batches"] == 3 and counters["repeated_after_success"] == 0
    assert counters["lines"] == generations.total + first_round.total + reasks.total
    jobs = [generations, first_round, reasks]
    tokens = sum(j.prompt_tokens * 1.0 + j.completion_tokens * 4.0 for j in jobs) / 1e6  # half of 2 and 8 USD
    assert sum(j.cost_usd for j in jobs) == pytest.approx(tokens) and tokens > 0
    judged = judgements["prompt_tokens"].sum() + 4 * judgements["completion_tokens"].sum()
    assert first_round.cost_usd + reasks.cost_usd == pytest.approx(judged / 1e6)
    rated = instance.get_latest_materialization_event(dg.AssetKey("ratings"))
    assert rated is not None and rated.asset_materialization is not None
    metadata = rated.asset_materialization.metadata
    assert metadata["batch_submitted"].value == first_round.total + reasks.total
    assert metadata["batch_cost_usd"].value == pytest.approx(first_round.cost_usd + reasks.cost_usd, abs=1e-6)


def test_the_step_budget_caps_batch_submissions_and_fails_the_rest_as_budget_exhausted(tmp_path: Path) -> None:
    cap = 0.012  # about half the generations' estimate (max_tokens 256 out at 4 USD a million, batch price)
    with run_fake_openai(seed=5, batch=json.dumps(FAST)) as server:
        settings = batch_settings(server.base_url, tmp_path, budget=cap, max_failure_rate=1.0)
        run_through_sensor(settings, dg.DagsterInstance.ephemeral())
        counters = batch_counters(server)
    store = JobStore(store_path(settings.cache_path()))
    by_asset: dict[str, list[Any]] = {}
    for job in store.jobs():
        (asset,) = {a for a, _ in store.waiters_of(job.job_key)}
        by_asset.setdefault(asset, []).append(job)
    store.close()
    gens = pl.read_parquet(tmp_path / "generations_by_model" / f"{PARTITION}.parquet")
    refused = gens.filter(pl.col("status") == "failed")
    (generations,) = by_asset["generations_by_model"]  # its next run refuses the same requests: no second job
    submitted = generations.total
    assert gens.height == 2 * N and 0 < submitted < 2 * N and refused.height == 2 * N - submitted
    assert (refused["reason"] == f"budget_exhausted: budget of {cap} USD spent").all()
    assert 0 < generations.cost_usd <= cap
    assert sum(j.cost_usd for j in by_asset.get("ratings", [])) <= cap
    assert counters["lines"] == sum(j.total for jobs in by_asset.values() for j in jobs)
    ratings = pl.read_parquet(tmp_path / "ratings" / f"{PARTITION}.parquet")
    assert ratings.height == N and ratings.filter(pl.col("status") != "ok")["reason"].is_not_null().all()
