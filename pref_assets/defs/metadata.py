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


# Preview columns people read first (chosen/rejected show their last turn, the answer), and the ids they rarely need.
TEXT_COLUMNS = ("instruction", "prompt", "generation", "chosen", "rejected")
ID_COLUMNS = ("prompt_id", "row_id")


def preview(frame: pl.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Return the first rows as a table: the text columns first (excerpts), then ``columns``, ids last."""
    texts = [c for c in TEXT_COLUMNS if c in frame.columns]
    middle = [c for c in columns if c in frame.columns and c not in texts and c not in ID_COLUMNS]
    shown = [*texts, *middle, *[c for c in ID_COLUMNS if c in frame.columns and (c in columns or c == "prompt_id")]]
    head = frame.select(shown).head(PREVIEW_ROWS)
    schema = dg.TableSchema(columns=[dg.TableColumn(c, _column_type(head.schema[c])) for c in shown])
    records = [dg.TableRecord({c: _cell(row[c]) for c in shown}) for row in head.iter_rows(named=True)]
    return {"preview": dg.MetadataValue.table(records, schema)}


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    return "bool" if dtype == pl.Boolean else "string"


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        value = value[-1]["content"]  # a conversation: its last turn
    text = str(value).replace("\n", " ")
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
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
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


_RATINGS = ("1", "2", "3", "4", "5", "N/A")


def histogram_chart(histogram: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Return the rating distribution as one table: a row per model, the count of each rating, the total and the
    mean rating (N/A left out)."""
    columns = [dg.TableColumn("model", "string"), *[dg.TableColumn(r, "int") for r in _RATINGS],
               dg.TableColumn("ratings", "int"), dg.TableColumn("mean", "float")]  # fmt: skip
    records = []
    for model, counts in histogram.items():
        rated = sum(counts.get(r, 0) for r in _RATINGS[:-1])
        mean = sum(int(r) * counts.get(r, 0) for r in _RATINGS[:-1]) / rated if rated else None
        row = {"model": model, **{r: counts.get(r, 0) for r in _RATINGS}, "ratings": sum(counts.values())}
        records.append(dg.TableRecord({**row, "mean": None if mean is None else round(mean, 3)}))
    return {"rating_distribution": dg.MetadataValue.table(records, dg.TableSchema(columns=columns))}


def judge_figures(frame: pl.DataFrame) -> dict[str, Any]:
    """Return per-batch figures of a ``ratings`` frame as numbers the Plots tab charts across partitions.

    ``rating_mean/<model>``: the mean score of each generator's answers; ``tie_rate``: the share of rated prompts
    (two scores or more) whose scores all tie. Parse rate and first-position win rate are in the judge report.
    """
    if frame.is_empty() or "scores" not in frame.columns:
        return {}
    rated = frame.filter(pl.col("status") == "ok").select("generation_models", "scores")
    slots = rated.explode("generation_models", "scores").drop_nulls("scores")
    means = slots.group_by("generation_models", maintain_order=True).agg(pl.col("scores").mean())
    figures: dict[str, Any] = {
        f"rating_mean/{model}": dg.MetadataValue.float(round(float(mean), 4)) for model, mean in means.iter_rows()
    }
    scores = [[s for s in row if s is not None] for row in rated["scores"].to_list()]
    judged = [s for s in scores if len(s) >= 2]
    ties = sum(1 for s in judged if min(s) == max(s))
    figures["tie_rate"] = dg.MetadataValue.float(round(ties / len(judged), 4)) if judged else dg.MetadataValue.null()
    return figures
