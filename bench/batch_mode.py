"""A 1,000-prompt batch in batch mode against the fake server's Batch API, beside the same batch online.

    .venv/bin/python bench/batch_mode.py                  # 1,000 prompts, 2 generators + judge
    .venv/bin/python bench/batch_mode.py --prompts 200 --error-fraction 0 --expire-first 0

The batch-mode run goes the way the daemon runs it, in one process: the job for the batch (the generations step
submits and yields nothing), then the ``llm_batches`` sensor evaluated every second, each run it requests executed
at once, until the pairs exist. The fake Batch API fails some lines once (``--error-fraction``) and lets its first
job expire half done (``--expire-first``), so resubmission is part of the figures; files are split at
``--per-file`` requests. Printed: jobs recorded and batches the provider holds (duplicates: a job with two
batches), prompts accounted for at every stage, whether the pairs equal the online pairs row for row, and the
cost online and at the batch price.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.clients.batch_api import BatchAPIClient
from pref_assets.clients.batch_store import METADATA_KEY, JobStore
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.batches import SENSOR_NAME, store_path
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai

STAGES = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs")
PAIR_COLUMNS = ["prompt_id", "chosen", "rejected", "chosen_model", "rejected_model", "status", "reason"]
PRICES = {"price_input_per_million": 2.0, "price_output_per_million": 8.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--per-file", type=int, default=1000, help="requests per input file")
    parser.add_argument("--error-fraction", type=float, default=0.02)
    parser.add_argument("--expire-first", type=int, default=1)
    parser.add_argument("--in-progress-s", type=float, default=3.0)
    args = parser.parse_args()
    knobs = {"validating_s": 0.5, "in_progress_s": args.in_progress_s, "finalizing_s": 0.5,
             "error_fraction": args.error_fraction, "expire_first": args.expire_first}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, run_fake_openai(seed=7, batch=json.dumps(knobs)) as server:
        root = Path(folder)
        prompts = _write_prompts(root / "prompts.jsonl", args.prompts)
        online = _settings(server.base_url, root / "online", prompts, args)
        started = time.perf_counter()
        online_instance = dg.DagsterInstance.ephemeral()
        key = _run_job(online, online_instance)
        online_s, online_requests = time.perf_counter() - started, server.stats()["requests"]
        server.reset()
        batch = _settings(server.base_url, root / "batch", prompts, args, mode="batch")
        batch_instance = dg.DagsterInstance.ephemeral()
        started = time.perf_counter()
        runs = _run_through_sensor(batch, batch_instance, key)
        batch_s = time.perf_counter() - started
        provider = _provider_batches(server.base_url)
        figures = {
            "online_wall_s": round(online_s, 1),
            "online_requests": online_requests,
            "batch_wall_s": round(batch_s, 1),
            "batch_runs_requested_by_sensor": runs,
            "batch_requests_sent_online": server.stats()["requests"],
            **_job_figures(batch, provider),
            **_accounting(root, key, args.prompts),
            "pairs_equal_online": _pairs(root / "online", key).equals(_pairs(root / "batch", key)),
            "ok_pairs": _pairs(root / "batch", key).filter(pl.col("status") == "ok").height,
            "online_cost_usd": _step_cost(online_instance),
            **_cache_cost(batch_instance),
        }
    figures["batch_cost_over_online"] = round(figures["batch_cost_usd"] / max(figures["online_cost_usd"], 1e-12), 4)
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")


def _write_prompts(path: Path, count: int) -> Path:
    topics = ["tides", "compilers", "photosynthesis", "inflation", "volcanoes", "sorting", "vaccines", "orbits"]
    with path.open("w") as out:
        for i in range(count):
            text = f"Explain {topics[i % len(topics)]} to a reader of level {i // len(topics)}, in three sentences."
            out.write(json.dumps({"instruction": text}) + "\n")
    return path


def _settings(base_url: str, store: Path, prompts: Path, args: argparse.Namespace, *, mode: str = "online") -> Settings:
    endpoint = EndpointSettings(name="fake", base_url=base_url, structured_output="json_schema", mode=mode,
                                max_concurrency=64, batch_poll_interval_s=1,
                                batch_max_requests_per_file=args.per_file)  # fmt: skip
    return Settings(
        storage_dir=str(store),
        batch_size=args.prompts,
        source=SourceSettings(kind="files", paths=[str(prompts)]),
        endpoints=[endpoint],
        generators=[
            ModelSettings(name="a", endpoint="fake", model="model-a", params={"temperature": 0.2}, **PRICES),
            ModelSettings(name="b", endpoint="fake", model="model-b", params={"temperature": 0.9}, **PRICES),
        ],
        judge=JudgeSettings(name="judge", endpoint="fake", model="judge", max_reasks=0, **PRICES),
    )


def _run_job(settings: Settings, instance: dg.DagsterInstance) -> str:
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    key = job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)[0]
    selection = [dg.AssetKey(name) for name in STAGES]
    assert job.execute_in_process(partition_key=key, instance=instance, asset_selection=selection).success
    return key


def _run_through_sensor(settings: Settings, instance: dg.DagsterInstance, key: str, timeout: float = 900) -> int:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(JOB_NAME)
    _run_job(settings, instance)
    sensor, runs = defs.resolve_sensor_def(SENSOR_NAME), 0
    deadline = time.monotonic() + timeout
    while not (Path(settings.storage_dir) / "dpo_pairs" / f"{key}.parquet").is_file():
        if time.monotonic() > deadline:
            raise TimeoutError("the pairs never came")
        time.sleep(1.0)
        with dg.build_sensor_context(instance=instance, resources={"llm": defs.resources["llm"]},
                                     definitions=defs) as context:  # fmt: skip
            result = sensor(context)
        for request in result.run_requests if isinstance(result, dg.SensorResult) else []:
            selection = [k for k in request.asset_selection or [] if k.to_user_string() in STAGES]
            runs += 1
            assert job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                          asset_selection=selection).success  # fmt: skip
    return runs


def _provider_batches(base_url: str) -> list[dict[str, Any]]:
    with BatchAPIClient(base_url) as client:
        return list(client.iter_batches())


def _job_figures(settings: Settings, provider: list[dict[str, Any]]) -> dict[str, Any]:
    store = JobStore(store_path(settings.cache_path()))
    try:
        jobs = store.jobs()
    finally:
        store.close()
    per_job = Counter(str((b.get("metadata") or {}).get(METADATA_KEY)) for b in provider)
    return {
        "jobs_recorded": len(jobs),
        "jobs_by_attempt": dict(Counter(j.attempt for j in jobs)),
        "jobs_by_status": dict(Counter(str(j.status) for j in jobs)),
        "provider_batches": len(provider),
        "duplicate_jobs": sum(n - 1 for n in per_job.values()) + sum(1 for k in per_job if k not in
                                                                      {j.job_key for j in jobs}),
        "lines_submitted": sum(j.total for j in jobs),
        "lines_failed_then_resubmitted": sum(j.failed + j.expired for j in jobs),
        "batch_cost_usd": round(sum(j.cost_usd for j in jobs), 6),
        "turnaround_s_per_job": [j.turnaround_s for j in jobs],
    }


def _accounting(root: Path, key: str, prompts: int) -> dict[str, Any]:
    """Return the prompts each stage accounts for (distinct prompt ids, any status) and the rows not ok."""
    out = {}
    for stage in STAGES:
        frame = pl.read_parquet(root / "batch" / stage / f"{key}.parquet")
        out[f"{stage}_prompts"] = frame["prompt_id"].n_unique()
        out[f"{stage}_not_ok"] = frame.filter(pl.col("status") != "ok").height
    out["lost_prompts"] = prompts - min(out[f"{stage}_prompts"] for stage in STAGES)
    return out


def _pairs(store: Path, key: str) -> pl.DataFrame:
    return pl.read_parquet(store / "dpo_pairs" / f"{key}.parquet").select(PAIR_COLUMNS).sort("prompt_id")


def _step_cost(instance: dg.DagsterInstance) -> float:
    total = 0.0
    for stage in ("generations_by_model", "ratings"):
        event = instance.get_latest_materialization_event(dg.AssetKey(stage))
        metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
        total += float(metadata["cost_usd"].value) if "cost_usd" in metadata else 0.0
    return round(total, 6)


def _cache_cost(instance: dg.DagsterInstance) -> dict[str, Any]:
    """Return what the batch run's steps report: the online cost of the collecting runs (cached answers: 0) and
    the batch cost in their batch metadata."""
    shown = 0.0
    for stage in ("generations_by_model", "ratings"):
        event = instance.get_latest_materialization_event(dg.AssetKey(stage))
        metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
        shown += float(metadata["batch_cost_usd"].value) if "batch_cost_usd" in metadata else 0.0
    return {"batch_cost_usd_in_asset_metadata": round(shown, 6), "online_cost_of_batch_run_usd": _step_cost(instance)}


if __name__ == "__main__":
    main()
