from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.io_manager import partition_path
from pref_assets.defs.partitions import FOLDER_PARTITIONS
from pref_assets.defs.schedules import SCHEDULE_NAME
from pref_assets.defs.sensors import SENSOR_NAME
from pref_assets.settings import Settings


def _write(folder: Path, name: str, text: str, age_s: float = 60.0) -> None:
    """Write a file as if it had been complete for ``age_s`` seconds."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def _drop(folder: Path, name: str, n_rows: int, age_s: float = 60.0) -> None:
    _write(folder, name, "".join(json.dumps({"instruction": f"{name} q{i}"}) + "\n" for i in range(n_rows)), age_s)


def _defs(folder: Path, storage_dir: str = "pref_data") -> dg.Definitions:
    source = {"kind": "folder", "folder": str(folder)}
    return build_definitions(Settings(source=source, batch_size=10, storage_dir=storage_dir))


class Daemon:
    """Ticks the sensor the way the daemon does: evaluate, add the requested partitions, keep the cursor."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.sensor = defs.resolve_sensor_def(SENSOR_NAME)
        self.repo = defs.get_repository_def()
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, instance_ref=self.instance.get_ref(),
                                          cursor=self.cursor, repository_def=self.repo)  # fmt: skip
        data = self.sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        self.cursor = data.cursor
        return data

    def partitions(self) -> list[str]:
        return self.instance.get_dynamic_partitions(FOLDER_PARTITIONS)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as instance:
        yield instance


def _keys(name: str, *indexes: int) -> list[str]:
    return [f"{name}/batch-{i:05d}" for i in indexes]


def test_a_folder_source_has_dynamic_partitions_and_a_running_sensor(tmp_path: Path) -> None:
    defs = _defs(tmp_path)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == JOB_NAME
    assert sensor.minimum_interval_seconds == 30
    partitions = defs.resolve_job_def(JOB_NAME).partitions_def
    assert isinstance(partitions, dg.DynamicPartitionsDefinition)
    assert partitions.name == FOLDER_PARTITIONS


def test_other_sources_keep_static_partitions_and_no_folder_sensor() -> None:
    defs = build_definitions(Settings())
    assert isinstance(defs.resolve_job_def(JOB_NAME).partitions_def, dg.StaticPartitionsDefinition)
    assert SENSOR_NAME not in {s.name for s in defs.get_repository_def().sensor_defs}


def test_new_files_become_partitions_and_runs(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    daemon = Daemon(_defs(tmp_path), instance)
    _drop(tmp_path, "a.jsonl", 25)
    first = daemon.tick()
    assert daemon.partitions() == _keys("a.jsonl", 0, 1, 2)
    assert [r.partition_key for r in first.run_requests] == _keys("a.jsonl", 0, 1, 2)
    assert {r.tags["dagster/partition"] for r in first.run_requests} == set(_keys("a.jsonl", 0, 1, 2))

    idle = daemon.tick()
    assert idle.run_requests == []
    assert idle.skip_message == "no new or changed prompt file"

    _write(tmp_path, "b.csv", "instruction\n" + "".join(f"b q{i}\n" for i in range(5)))
    second = daemon.tick()
    assert [r.partition_key for r in second.run_requests] == _keys("b.csv", 0)
    assert daemon.partitions() == [*_keys("a.jsonl", 0, 1, 2), *_keys("b.csv", 0)]


def test_a_grown_file_adds_its_new_batch_and_reruns_changed_ones(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    daemon = Daemon(_defs(tmp_path), instance)
    _drop(tmp_path, "a.jsonl", 25)
    before = {r.partition_key: r.run_key for r in daemon.tick().run_requests}
    _drop(tmp_path, "a.jsonl", 32, age_s=30)  # batch 2 gains rows 25-29, batch 3 is new
    after = daemon.tick()
    assert [r.partition_key for r in after.run_requests] == _keys("a.jsonl", 2, 3)
    assert after.run_requests[0].run_key != before["a.jsonl/batch-00002"]
    assert daemon.partitions() == _keys("a.jsonl", 0, 1, 2, 3)


def test_a_bad_file_is_logged_and_does_not_block_a_good_one(
    tmp_path: Path, instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    daemon = Daemon(_defs(tmp_path), instance)
    _write(tmp_path, "bad.jsonl", '{"instruction": "ok"}\n{"instruction": "ok too"}\nnot json\n')
    _drop(tmp_path, "good.jsonl", 3)
    result = daemon.tick()
    assert [r.partition_key for r in result.run_requests] == _keys("good.jsonl", 0)
    logged = capfd.readouterr().err
    assert f"ERROR - {tmp_path / 'bad.jsonl'}:3: malformed JSON" in logged
    assert "skipped until the file changes" in logged

    assert daemon.tick().run_requests == []
    assert "bad.jsonl" not in capfd.readouterr().err

    _drop(tmp_path, "bad.jsonl", 2, age_s=30)
    assert [r.partition_key for r in daemon.tick().run_requests] == _keys("bad.jsonl", 0)


def test_partial_and_hidden_files_wait_until_they_are_complete(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    daemon = Daemon(_defs(tmp_path), instance)
    _drop(tmp_path, ".incoming.jsonl", 5)
    _drop(tmp_path, "incoming.jsonl.part", 5)
    _drop(tmp_path, "being-written.jsonl", 5, age_s=0)
    result = daemon.tick()
    assert result.run_requests == []
    assert daemon.partitions() == []

    (tmp_path / ".incoming.jsonl").rename(tmp_path / "incoming.jsonl")  # written, then renamed into place
    os.utime(tmp_path / "being-written.jsonl", (time.time() - 60, time.time() - 60))  # no longer being written
    later = daemon.tick()
    expected = _keys("being-written.jsonl", 0) + _keys("incoming.jsonl", 0)
    assert sorted(r.partition_key for r in later.run_requests) == expected
    assert sorted(daemon.partitions()) == expected


def test_the_schedule_walks_the_added_partitions(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    defs = _defs(tmp_path)
    daemon = Daemon(defs, instance)
    _drop(tmp_path, "a.jsonl", 25)
    daemon.tick()
    instance.report_runless_asset_event(dg.AssetMaterialization("dpo_pairs", partition="a.jsonl/batch-00000"))
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 1, 1, tzinfo=UTC),
                                        repository_def=defs.get_repository_def())  # fmt: skip
    result = defs.resolve_schedule_def(SCHEDULE_NAME).evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == _keys("a.jsonl", 1, 2)


def test_prompts_reads_the_slice_of_the_keys_file(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    folder, store = tmp_path / "in", tmp_path / "store"
    folder.mkdir()
    _drop(folder, "a.jsonl", 25)
    _drop(folder, "b.jsonl", 25)
    defs = _defs(folder, storage_dir=str(store))
    key = "b.jsonl/batch-00001"
    instance.add_dynamic_partitions(FOLDER_PARTITIONS, [key])
    result = dg.materialize([defs.resolve_assets_def("prompts")], partition_key=key, instance=instance)
    assert result.success
    frame = pl.read_parquet(partition_path(str(store), "prompts", key))
    assert frame["instruction"].to_list() == [f"b.jsonl q{i}" for i in range(10, 20)]
    assert frame["source_ref"].to_list()[0] == f"{folder / 'b.jsonl'}:11"
    assert set(frame["status"]) == {"ok"}
