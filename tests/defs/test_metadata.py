from __future__ import annotations

import polars as pl

from pref_assets.defs.metadata import histogram_chart, preview, status_metadata


def test_histogram_chart_scales_bars_to_the_largest_count() -> None:
    chart = histogram_chart({"a": {"1": 5, "5": 10}}, width=10)["rating_distribution"].value
    assert "  1 █████      5" in chart and "  5 ██████████ 10" in chart and "N/A" not in chart


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


def test_preview_escapes_pipes_and_shortens_cells() -> None:
    md = preview(pl.DataFrame({"text": ["a|b", "x" * 200]}), ["text", "missing"])["preview"].value
    assert "a\\|b" in md and "…" in md and "missing" not in md
