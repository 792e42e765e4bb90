from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pref_assets.cli import main
from pref_assets.core.rows import PairRow
from pref_assets.defs import schemas
from pref_assets.export import PAIR_COLUMNS, collect_pairs, to_dataset, to_layout, write_pairs


def _pair(pid: str, status: str = "ok") -> PairRow:
    if status != "ok":
        return PairRow(prompt_id=pid, status=status, failed_stage="dpo_pairs", reason="all_tied")
    user = {"role": "user", "content": f"q{pid}"}
    return PairRow(
        prompt_id=pid,
        prompt=f"q{pid}",
        chosen=[user, {"role": "assistant", "content": "good"}],
        chosen_model="a",
        chosen_rating=5.0,
        rejected=[user, {"role": "assistant", "content": "bad"}],
        rejected_model="b",
        rejected_rating=1.0,
        margin=4.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    (tmp_path / "dpo_pairs").mkdir()
    schemas.to_frame([_pair("1"), _pair("2", "skipped")], PairRow).write_parquet(
        tmp_path / "dpo_pairs" / "batch-00000.parquet"
    )
    schemas.to_frame([_pair("3")], PairRow).write_parquet(tmp_path / "dpo_pairs" / "batch-00001.parquet")
    return tmp_path


def test_collect_keeps_ok_pairs_of_every_batch(store: Path) -> None:
    frame = collect_pairs(store)
    assert frame["prompt_id"].to_list() == ["1", "3"]
    assert frame.columns == [*PAIR_COLUMNS, "batch"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_write_round_trips(store: Path, tmp_path: Path, suffix: str) -> None:
    path = write_pairs(collect_pairs(store), tmp_path / f"out{suffix}")
    back = pl.read_parquet(path) if suffix == ".parquet" else pl.read_ndjson(path)
    assert back["chosen"].to_list()[0][-1] == {"role": "assistant", "content": "good"}


def test_unknown_suffix_is_refused(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet or \.jsonl"):
        write_pairs(collect_pairs(store), tmp_path / "out.csv")


def test_trl_conversational_layout_is_what_trl_reads(store: Path) -> None:
    data_utils = pytest.importorskip("trl.data_utils")
    dataset = to_dataset(collect_pairs(store))
    assert dataset.num_rows == 2
    row = dataset[0]
    assert row["prompt"] == [{"role": "user", "content": "q1"}]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert data_utils.is_conversational(row)
    assert data_utils.maybe_extract_prompt(row) == row


def test_dpo_layout_extracts_to_the_same_explicit_form(store: Path) -> None:
    data_utils = pytest.importorskip("trl.data_utils")
    stored = to_dataset(collect_pairs(store), layout="dpo")[0]
    explicit = data_utils.maybe_extract_prompt(stored)
    assert explicit["prompt"] == [{"role": "user", "content": "q1"}]
    assert explicit["rejected"] == [{"role": "assistant", "content": "bad"}]


def test_trl_standard_layout_is_plain_text(store: Path) -> None:
    row = to_layout(collect_pairs(store), "trl-standard").row(0, named=True)
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("q1", "good", "bad")


def test_cli_export(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"storage_dir: {store}\n")
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(config))
    assert main(["export", str(tmp_path / "final.jsonl")]) == 0
    assert "wrote 2 pairs" in capsys.readouterr().out
    lines = (tmp_path / "final.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt_id"] for line in lines] == ["1", "3"]


def test_cli_cache_stats_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pref_assets.clients.cache import RequestCache

    config = tmp_path / "c.yaml"
    config.write_text(f"storage_dir: {tmp_path}\n")
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(config))
    cache = RequestCache(tmp_path / "cache" / "requests.sqlite")
    cache.put("k", "e", "m", {"text": "x"})
    cache.close()
    assert main(["cache", "stats"]) == 0
    assert capsys.readouterr().out.startswith("1 cached responses")
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 cached responses")


def test_cli_export_to_an_unsupported_suffix_or_from_an_empty_store_is_a_message(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"storage_dir: {store}\n")
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(config))
    assert main(["export", str(tmp_path / "pairs.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pref-assets export: ") and ".parquet or .jsonl" in err and "Traceback" not in err
    assert not (tmp_path / "pairs.csv").exists()
    assert main(["export", str(tmp_path / "pairs.parquet"), "--asset", "preference_pairs"]) == 2
    assert "no batch of preference_pairs is materialized yet" in capsys.readouterr().err


def test_summary_reads_the_configuration_of_the_batch_s_last_run(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import dagster as dg

    from pref_assets.defs.jobs import CONFIG_FILE_TAG, EMBEDDED_DEFAULT

    config = tmp_path / "elsewhere.yaml"
    config.write_text(f"storage_dir: {store}\n")
    home = tmp_path / "home"
    home.mkdir()

    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def tagged() -> None:
        noop()

    gone = tmp_path / "deleted.yaml"
    recorded = {"batch-00001": str(config), "batch-00002": str(gone), "batch-00003": EMBEDDED_DEFAULT}
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for batch, file in recorded.items():
            tags = {"dagster/partition": batch, CONFIG_FILE_TAG: file}
            assert tagged.execute_in_process(instance=instance, tags=tags).success
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("PREF_ASSETS_CONFIG")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    assert main(["summary", "--partition", "batch-00001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"configuration: {config} (used by the last run of batch-00001); storage_dir: {store}")
    assert "dpo_pairs              ok 1" in out and "preference_dataset     not materialized" in out
    assert main(["summary", "--partition", "batch-00000"]) == 0  # no run of that batch: the defaults
    assert capsys.readouterr().out.startswith("configuration: the embedded default; storage_dir")
    assert main(["summary", "--partition", "batch-00003"]) == 0
    shown = capsys.readouterr()
    assert shown.out.startswith("configuration: the embedded default (used by the last run of batch-00003);")
    assert shown.err == ""
    assert main(["summary", "--partition", "batch-00002"]) == 0  # its configuration file was deleted since
    shown = capsys.readouterr()
    assert shown.out.startswith(f"configuration: the embedded default ({gone}, used by the last run of batch-00002, "
                                "is gone);")  # fmt: skip
    assert shown.err.startswith(f"warning: {gone}, the configuration file of the last run of batch-00002, is gone")


def test_a_run_with_another_configuration_in_the_same_instance_is_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import dagster as dg

    from pref_assets.cli import _note_other_configuration
    from pref_assets.defs.jobs import CONFIG_TAG, STORAGE_TAG

    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def earlier() -> None:
        noop()

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        tags = {CONFIG_TAG: "aaaaaaaaaaaa", STORAGE_TAG: "/a"}
        assert earlier.execute_in_process(instance=instance, tags=tags).success
        _note_other_configuration(instance, {CONFIG_TAG: "aaaaaaaaaaaa"})
        assert capsys.readouterr().out == ""
        _note_other_configuration(instance, {CONFIG_TAG: "bbbbbbbbbbbb"})
    out = capsys.readouterr().out
    assert out.startswith("note: the last run") and "(aaaaaaaaaaaa, storage /a)" in out and "DAGSTER_HOME" in out
