"""All six assets for one small batch against the real embedded llama.cpp server."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import JudgeSettings, Settings

pytestmark = pytest.mark.slow

CHAIN = ["prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records"]


def _read(base: Path, asset: str) -> pl.DataFrame:
    return pl.read_parquet(base / asset / "batch-00001.parquet")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInProcessResult]:
    base = tmp_path_factory.mktemp("store")
    defaults = Settings()
    generators = [g.model_copy(update={"params": g.params | {"max_tokens": 48}}) for g in defaults.generators]
    judge = JudgeSettings(**defaults.judge.model_dump() | {"aspects": ["helpfulness", "honesty"]})
    settings = Settings(storage_dir=str(base), batch_size=3, generators=generators, judge=judge)
    result = (
        build_definitions(settings)
        .resolve_job_def(JOB_NAME)
        .execute_in_process(partition_key="batch-00001", instance=dg.DagsterInstance.ephemeral())
    )
    return base, result


def test_every_asset_materializes(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    base, result = run
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
                    for e in [e.event_specific_data.materialization]}  # fmt: skip
    assert materialized == {*CHAIN, "human_feedback", "preference_pairs", "preference_dataset"}
    for asset in CHAIN:
        assert (base / asset / "batch-00001.parquet").is_file()


def test_every_prompt_is_accounted_for_at_every_stage(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    base, _ = run
    ids = _read(base, "prompts")["prompt_id"].to_list()
    assert len(ids) == 3
    for asset in ["grouped", "ratings", "dpo_pairs", "argilla_records"]:
        frame = _read(base, asset)
        assert sorted(frame["prompt_id"].to_list()) == sorted(ids), asset
        bad = frame.filter((pl.col("status") != "ok") & pl.col("reason").is_null())
        assert bad.is_empty(), f"{asset}: rows without a reason"


def test_generations_are_real_model_answers(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    base, _ = run
    gens = _read(base, "generations_by_model")
    assert gens.height == 6
    ok = gens.filter(pl.col("status") == "ok")
    assert ok.height >= 4
    assert (ok["completion_tokens"] > 0).all() and (ok["latency_s"] > 0).all()
    assert set(ok["finish_reason"].to_list()) <= {"stop", "length"}


def test_ratings_cover_both_aspects_with_raw_text(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    base, _ = run
    for row in _read(base, "ratings").to_dicts():
        if row["status"] != "ok":
            assert row["reason"].startswith(("judge_", "no_answer"))
            continue
        assert [j["aspect"] for j in row["judgements"]] == ["helpfulness", "honesty"]
        for judgement in row["judgements"]:
            assert judgement["raw_text"]
            rated = [r for r, g in zip(judgement["ratings"], row["generations"], strict=True) if g is not None]
            assert all(r is None or 1 <= r <= 5 for r in rated)


def test_pairs_are_trl_preference_rows(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    data_utils = pytest.importorskip("trl.data_utils")
    base, _ = run
    pairs = _read(base, "dpo_pairs")
    ok = pairs.filter(pl.col("status") == "ok")
    assert ok.height >= 1, pairs.select("status", "reason").to_dicts()
    for row in ok.to_dicts():
        assert row["chosen"] != row["rejected"]
        assert row["chosen_rating"] > row["rejected_rating"]
        explicit = data_utils.maybe_extract_prompt({k: row[k] for k in ("prompt", "chosen", "rejected")})
        assert explicit["prompt"] == [{"role": "user", "content": row["prompt"]}]
        assert explicit["chosen"] == [row["chosen"][-1]] and row["chosen"][-1]["role"] == "assistant"
        assert data_utils.is_conversational(explicit)
    skipped = pairs.filter(pl.col("status") == "skipped")
    assert set(skipped["reason"].to_list()) <= {"all_tied", "fewer_than_two_rated_answers"}


def test_records_stay_local_without_argilla(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    _, result = run
    [event] = [e for e in result.get_asset_materialization_events()
               if e.event_specific_data.materialization.asset_key == dg.AssetKey("argilla_records")]  # fmt: skip
    metadata = event.event_specific_data.materialization.metadata
    assert "not pushed" in metadata["argilla"].value
