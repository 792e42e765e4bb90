"""Asset metadata people read: counts by status and reason, token and latency figures, a preview."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import polars as pl

PREVIEW_ROWS = 5
_CELL_CHARS = 80


def status_metadata(frame: pl.DataFrame) -> dict[str, Any]:
    """Return row count, ok/failed/skipped counts and counts per failure reason."""
    counts = Counter(frame["status"].to_list()) if frame.height else Counter()
    reasons = Counter(_reason_kind(r) for r in frame.filter(pl.col("status") != "ok")["reason"].to_list())
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "ok": dg.MetadataValue.int(counts.get("ok", 0)),
        "failed": dg.MetadataValue.int(counts.get("failed", 0)),
        "skipped": dg.MetadataValue.int(counts.get("skipped", 0)),
        "reasons": dg.MetadataValue.json(dict(reasons.most_common())),
    }


def _reason_kind(reason: str | None) -> str:
    return (reason or "unknown").split(":")[0]


def preview(frame: pl.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Return a markdown table of the first rows, long cells shortened."""
    head = frame.select([c for c in columns if c in frame.columns]).head(PREVIEW_ROWS)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
    return {"preview": dg.MetadataValue.md("\n".join(lines))}


def _cell(value: object) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def call_metadata(frame: pl.DataFrame, by: str) -> dict[str, Any]:
    """Return tokens, attempts and latency percentiles per value of column ``by``."""
    if frame.is_empty() or "latency_s" not in frame.columns:
        return {}
    calls = frame.filter(pl.col(by).is_not_null())
    stats = calls.group_by(by, maintain_order=True).agg(
        pl.len().alias("calls"),
        (pl.col("status") == "ok").sum().alias("ok"),
        pl.col("attempts").sum().alias("attempts"),
        pl.col("cached").sum().alias("cached"),
        pl.col("prompt_tokens").sum().alias("prompt_tokens"),
        pl.col("completion_tokens").sum().alias("completion_tokens"),
        pl.col("latency_s").quantile(0.5).round(3).alias("latency_p50_s"),
        pl.col("latency_s").quantile(0.95).round(3).alias("latency_p95_s"),
    )
    return {
        "calls": dg.MetadataValue.json(stats.to_dicts()),
        "prompt_tokens": dg.MetadataValue.int(int(calls["prompt_tokens"].sum())),
        "completion_tokens": dg.MetadataValue.int(int(calls["completion_tokens"].sum())),
    }


def report_metadata(report: dict[str, Any]) -> dict[str, Any]:
    """Return a report's figures as metadata values (numbers as numbers, tables as JSON)."""
    return {key: _value(value) for key, value in report.items()}


def _value(value: object) -> dg.MetadataValue:
    if isinstance(value, bool) or value is None:
        return dg.MetadataValue.text(str(value))
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    return dg.MetadataValue.json(value)


def cost_usd(frame: pl.DataFrame, models: dict[str, Any]) -> dict[str, Any]:
    """Return the USD cost of the paid (not cached) calls in ``frame``, per model and in total.

    ``models`` maps a model label to its settings (``price_input_per_million``, ``price_output_per_million``).
    """
    paid = frame.filter(pl.col("model").is_not_null() & ~pl.col("cached"))
    per_model = {}
    for name, settings in models.items():
        rows = paid.filter(pl.col("model") == name)
        tokens_in, tokens_out = int(rows["prompt_tokens"].sum()), int(rows["completion_tokens"].sum())
        per_model[name] = round(settings.cost_usd(tokens_in, tokens_out), 6)
    return {"cost_usd": dg.MetadataValue.float(round(sum(per_model.values()), 6)),
            "cost_usd_by_model": dg.MetadataValue.json(per_model)}  # fmt: skip


def histogram_chart(histogram: dict[str, dict[str, int]], width: int = 30) -> dict[str, Any]:
    """Return the rating distribution per model as a markdown bar chart."""
    labels = ["1", "2", "3", "4", "5", "N/A"]
    peak = max((n for counts in histogram.values() for n in counts.values()), default=0) or 1
    lines = []
    for model, counts in histogram.items():
        lines += [f"**{model}**", "```"]
        lines += [f"{label:>3} {'█' * round(width * counts.get(label, 0) / peak):<{width}} {counts.get(label, 0)}"
                  for label in labels if label != "N/A" or label in counts]  # fmt: skip
        lines.append("```")
    return {"rating_distribution": dg.MetadataValue.md("\n".join(lines) or "no ratings")}
