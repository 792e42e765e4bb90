"""Reruns pay for nothing twice: the request cache against a real (fake) OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai

N = 10


def _settings(base_url: str, store: Path, temperature_b: float = 0.7, cache: bool = True) -> Settings:
    return Settings(
        storage_dir=str(store),
        batch_size=N,
        source=SourceSettings(limit=N),
        endpoints=[EndpointSettings(name="fake", base_url=base_url, structured_output="json_schema")],
        generators=[
            ModelSettings(name="a", endpoint="fake", model="model-a", params={"temperature": 0.2}),
            ModelSettings(name="b", endpoint="fake", model="model-b", params={"temperature": temperature_b}),
        ],
        judge=JudgeSettings(name="judge", endpoint="fake", model="judge", max_reasks=0),
        cache={"enabled": cache},
    )


def _run(settings: Settings) -> None:
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    assert job.execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral()).success


def test_rerun_sends_nothing_and_a_param_edit_resends_only_that_model(tmp_path: Path) -> None:
    with run_fake_openai(seed=5) as server:
        _run(_settings(server.base_url, tmp_path))
        first = server.stats()
        assert first["requests"] == 3 * N
        pairs = pl.read_parquet(tmp_path / "dpo_pairs" / "batch-00000.parquet")

        server.reset()
        _run(_settings(server.base_url, tmp_path))
        assert server.stats()["requests"] == 0
        assert pl.read_parquet(tmp_path / "dpo_pairs" / "batch-00000.parquet").equals(pairs)
        gens = pl.read_parquet(tmp_path / "generations_by_model" / "batch-00000.parquet")
        assert gens["cached"].all()

        server.reset()
        _run(_settings(server.base_url, tmp_path, temperature_b=1.1))
        assert server.stats()["by_model"] == {"model-b": N, "judge": N}


def test_cache_can_be_switched_off(tmp_path: Path) -> None:
    with run_fake_openai(seed=5) as server:
        for _ in range(2):
            _run(_settings(server.base_url, tmp_path, cache=False))
        assert server.stats()["requests"] == 2 * 3 * N
    assert not (tmp_path / "cache").exists()
