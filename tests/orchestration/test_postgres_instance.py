"""deploy/postgres/dagster.yaml against a real PostgreSQL server: one batch runs end to end and its
run, events and materializations land in the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from orchestration_services import DEPLOY, PostgresServer, instance_home

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.testing.fake_openai import FakeServer
from pref_assets.testing.fake_pipeline import fake_settings

pytest.importorskip("dagster_postgres", reason="needs dagster-postgres (the project's `scale` extra)")

pytestmark = pytest.mark.slow
PARTITION = "batch-00000"


@pytest.fixture
def pg_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server: PostgresServer
) -> Iterator[dg.DagsterInstance]:
    """An instance loaded from DAGSTER_HOME holding a copy of deploy/postgres/dagster.yaml."""
    for name, value in postgres_server.env().items():
        monkeypatch.setenv(name, value)
    home = instance_home(tmp_path / "dagster_home", DEPLOY / "postgres" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_instance_config_uses_postgres_with_psycopg2(pg_instance: dg.DagsterInstance) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert pg_instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")


def test_one_batch_end_to_end_is_recorded_in_postgres(
    pg_instance: dg.DagsterInstance, postgres_server: PostgresServer, fake_llm: FakeServer, tmp_path: Path
) -> None:
    settings = fake_settings(fake_llm.base_url, tmp_path / "pref_data")
    job = build_definitions(settings).resolve_job_def(JOB_NAME)

    result = job.execute_in_process(partition_key=PARTITION, instance=pg_instance)

    assert result.success
    assert (tmp_path / "pref_data" / "dpo_pairs" / f"{PARTITION}.parquet").is_file()
    records = pg_instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("dpo_pairs"), asset_partitions=[PARTITION]), limit=1
    ).records
    assert len(records) == 1
    assert records[0].run_id == result.run_id
    assert _count(postgres_server, f"SELECT count(*) FROM runs WHERE run_id = '{result.run_id}'") == 1
    materialized = _count(
        postgres_server,
        "SELECT count(DISTINCT asset_key) FROM event_logs "
        f"WHERE run_id = '{result.run_id}' AND dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    assert materialized == len(build_definitions(settings).resolve_job_def(JOB_NAME).asset_layer.executable_asset_keys)


def _count(server: PostgresServer, sql: str) -> int:
    return int(server.psql(sql))
