from __future__ import annotations

import dagster as dg
import polars as pl

from pref_assets.defs.metadata import histogram_chart, judge_figures, preview, report_metadata, status_metadata


def test_histogram_is_one_table_with_counts_total_and_mean_per_model() -> None:
    table = histogram_chart({"a": {"1": 5, "5": 10}, "b": {"3": 2, "N/A": 1}})["rating_distribution"].value
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == ["model", "1", "2", "3", "4", "5", "N/A", "ratings", "mean"]
    a, b = (r.data for r in table.records)
    assert (a["model"], a["1"], a["5"], a["N/A"], a["ratings"], a["mean"]) == ("a", 5, 10, 0, 15, round(55 / 15, 3))
    assert (b["3"], b["N/A"], b["ratings"], b["mean"]) == (2, 1, 3, 3.0)


def test_status_metadata_counts_reasons_by_kind() -> None:
    frame = pl.DataFrame(
        {
            "status": ["ok", "failed", "failed", "skipped"],
            "reason": [None, "timeout: slow", "timeout: slower", "all_tied"],
        }
    )
    meta = status_metadata(frame)
    assert (meta["ok"].value, meta["failed"].value, meta["skipped"].value) == (1, 2, 1)
    assert meta["reasons"].value == {"timeout": 2, "all_tied": 1}


def test_preview_is_a_table_text_first_ids_last_long_cells_shortened() -> None:
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "the chosen answer\nline 2"}]
    frame = pl.DataFrame({
        "prompt_id": ["f" * 64], "margin": [1.5], "chosen": [conversation], "prompt": ["x" * 200], "status": ["ok"],
    })  # fmt: skip
    table = preview(frame, ["prompt_id", "margin", "status", "missing"])["preview"].value
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == ["prompt", "chosen", "margin", "status", "prompt_id"]
    assert [c.type for c in table.schema.columns] == ["string", "string", "float", "string", "string"]
    row = table.records[0].data
    assert row["prompt"].endswith("…") and len(row["prompt"]) == 80
    assert row["chosen"] == "the chosen answer line 2" and row["margin"] == 1.5


def test_judge_figures_are_numbers_per_model_and_a_tie_rate() -> None:
    frame = pl.DataFrame({
        "status": ["ok", "ok", "ok", "failed"],
        "generation_models": [["a", "b"], ["a", "b"], ["a", "b"], ["a", "b"]],
        "scores": [[5.0, 3.0], [2.0, 2.0], [4.0, None], [None, None]],
    })  # fmt: skip
    figures = judge_figures(frame)
    assert figures["rating_mean/a"].value == round(11 / 3, 4) and figures["rating_mean/b"].value == 2.5
    assert figures["tie_rate"].value == 0.5  # of the two prompts with two scores, one tied
    assert all(isinstance(v, dg.FloatMetadataValue) for v in figures.values())


def test_report_values_keep_their_types_and_none_is_null() -> None:
    meta = report_metadata({"rate": 0.5, "n": 3, "flag": True, "missing": None, "table": {"a": 1}})
    assert isinstance(meta["rate"], dg.FloatMetadataValue) and isinstance(meta["n"], dg.IntMetadataValue)
    assert isinstance(meta["flag"], dg.BoolMetadataValue) and isinstance(meta["missing"], dg.NullMetadataValue)
