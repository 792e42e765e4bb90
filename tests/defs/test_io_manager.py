"""Stored partitions stay inside storage_dir, whatever partition key reaches the IO manager."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pref_assets.core.paths import PathEscapeError
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.io_manager import partition_path
from pref_assets.defs.partitions import FOLDER_PARTITIONS
from pref_assets.export import collect_pairs
from pref_assets.hub_upload import write_local
from pref_assets.settings import Settings

ESCAPING_KEYS = [
    ("../../elsewhere/batch-00000", "'..', '.' or an empty path segment"),
    ("a.jsonl/../../../batch-00000", "'..', '.' or an empty path segment"),
    ("/tmp/elsewhere/batch-00000", "an absolute path"),
    ("..\\..\\elsewhere\\batch-00000", "a backslash"),
    ("a.jsonl\x00/batch-00000", "a control character"),
    ("a.jsonl/./batch-00000", "'..', '.' or an empty path segment"),
    ("a.jsonl//batch-00000", "'..', '.' or an empty path segment"),
    ("", "it is empty"),
]


@pytest.mark.parametrize(("key", "problem"), ESCAPING_KEYS)
def test_a_partition_key_that_leaves_the_storage_folder_is_refused(tmp_path: Path, key: str, problem: str) -> None:
    with pytest.raises(PathEscapeError) as raised:
        partition_path(str(tmp_path), "prompts", key)
    message = str(raised.value)
    assert message.startswith(f"partition key {key!r} cannot name a file under {tmp_path / 'prompts'}")
    assert problem in message and "\x00" not in message


def test_a_long_key_is_shown_cut_short(tmp_path: Path) -> None:
    key = "../" * 500 + "batch-00000"
    with pytest.raises(PathEscapeError) as raised:
        partition_path(str(tmp_path), "prompts", key)
    assert len(str(raised.value)) < 300 and "..." in str(raised.value)


def test_a_symlink_out_of_the_storage_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "store" / "prompts").mkdir(parents=True)
    os.symlink(outside, tmp_path / "store" / "prompts" / "a.jsonl")
    with pytest.raises(PathEscapeError, match=r"partition key 'a.jsonl/batch-00000' leads outside"):
        partition_path(str(tmp_path / "store"), "prompts", "a.jsonl/batch-00000")
    assert partition_path(str(tmp_path / "store"), "prompts", "b.jsonl/batch-00000") == (
        tmp_path / "store" / "prompts" / "b.jsonl" / "batch-00000.parquet"
    )


def test_export_refuses_a_stored_partition_that_links_outside(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.parquet"
    pl.DataFrame({"status": ["ok"]}).write_parquet(elsewhere)
    (tmp_path / "store" / "dpo_pairs").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "store" / "dpo_pairs" / "batch-00000.parquet")
    with pytest.raises(PathEscapeError, match=r"stored partition 'batch-00000.parquet' leads outside"):
        collect_pairs(tmp_path / "store")
    with pytest.raises(PathEscapeError, match=r"asset name '../elsewhere' cannot name a file"):
        collect_pairs(tmp_path / "store", "../elsewhere")


def test_a_dynamic_key_escaping_storage_fails_the_step_and_touches_nothing_outside(tmp_path: Path) -> None:
    key = "../../elsewhere/batch-00000"
    store = tmp_path / "store"
    planted = tmp_path / "elsewhere" / "batch-00000.parquet"  # where store/<asset>/<key>.parquet would point
    planted.parent.mkdir()
    pl.DataFrame({"prompt_id": ["x"], "status": ["ok"]}).write_parquet(planted)
    before = planted.read_bytes()
    settings = Settings(source={"kind": "folder", "folder": str(tmp_path / "in")}, storage_dir=str(store))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(FOLDER_PARTITIONS, [key])
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(
            partition_key=key,
            asset_selection=[dg.AssetKey("generations_by_model")],
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failures = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert any(f"partition key {key!r} cannot name a file under" in f for f in failures), failures
    assert planted.read_bytes() == before
    assert not (tmp_path / "elsewhere" / "batch-00000.parquet.partial").exists()


def test_the_published_copy_is_not_written_through_a_link_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "published").mkdir()
    os.symlink(outside, tmp_path / "published" / "data")
    with pytest.raises(PathEscapeError, match=r"data/train.parquet leads outside"):
        write_local(pl.DataFrame(), "card", tmp_path / "published", "dpo")
    assert list(outside.iterdir()) == []
