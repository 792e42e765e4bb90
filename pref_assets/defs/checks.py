"""Asset checks per batch, evaluated inside the asset's own step: the row ledger (blocking) and quality warnings
(duplicate prompts, empty answers, judge parse failures, ties).

A ledger check compares a stage's rows with the batch's rows: the row ids the batch's last `prompts`
materialization recorded (its row count gives them, `<batch>#0` ... `<batch>#n-1`), or, without such a record,
the rows of the stage's direct upstream. So lineage reads as the chain of stages, and a stage materialized on its
own after an upstream one lost a row still fails. Running in the asset's step costs no extra step, process or pod
per batch; a failed blocking check fails the step after its rows are stored, so downstream assets do not run and
the rows stay there to be read.

A step that covers several batches (a backfill run) records each check once per batch. Dagster 1.13 gives an
``AssetCheckResult`` no partition and fails a whole step on one failed blocking result, which would stop every
batch of the run for one bad batch. So in such a step each result becomes an ``AssetCheckEvaluation`` for its
batch, and a batch that fails its ledger is held back instead: its evaluation is recorded failed (not blocking the
step) and the later stages of the run mark its rows failed with the reason, without calling a model, while the
other batches go on.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.core.ids import row_id
from pref_assets.core.ledger import LedgerCheck, check_ledger

LEDGER = "ledger"
PROMPTS = dg.AssetKey("prompts")
DUPLICATES = "no_duplicate_prompts"
EMPTY_ANSWERS = "empty_answers"
PARSE_FAILURES = "judge_parse_failures"
TIES = "tie_rate"
_WARNINGS = {
    DUPLICATES: ("prompts", "No duplicate prompts in the batch (a repeat is kept as a failed row)."),
    EMPTY_ANSWERS: ("generations_by_model", "Few generations come back without text."),
    PARSE_FAILURES: ("ratings", "Few judge answers stay unparseable after the re-asks."),
    TIES: ("dpo_pairs", "Few judged prompts have every answer on the same score (no pair)."),
}


# run id -> batch -> the row count its last ``prompts`` materialization recorded (see ``batch_rows``)
_PROMPT_COUNTS: dict[str, dict[str, int | None]] = {}


def ledger_spec(stage: str, max_rate: float, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    """Return the blocking ledger check of ``stage`` (its rows against the batch's prompts), a result per batch."""
    return _partitioned_spec(
        LEDGER,
        asset=stage,
        blocking=True,
        partitions_def=partitions,
        description=f"Every prompt of the batch is in {stage}, ok or with a reason; "
        f"at most {max_rate:.0%} of its rows failed at this stage.",
    )


def batch_rows(context: dg.AssetExecutionContext, batch: str | None = None) -> pl.DataFrame | None:
    """Return the row ids of ``batch`` (default: the step's partition) as its last ``prompts`` materialization
    recorded them (None: no record). The records of every batch of the step are read at its first call, in one
    query, and kept for the run: its ``prompts`` step, if it has one, ran before any step that asks."""
    batch = batch or context.partition_key
    counts = _PROMPT_COUNTS.get(context.run.run_id, {})
    if batch not in counts:
        counts = counts | prompt_counts(context.instance, sorted({batch, *context.partition_keys}))
        _PROMPT_COUNTS.clear()  # only the current run's counts are kept
        _PROMPT_COUNTS[context.run.run_id] = counts
    count = counts.get(batch)
    if count is None:
        return None
    return pl.DataFrame({"row_id": [row_id(batch, i) for i in range(count)]})


def prompt_counts(instance: dg.DagsterInstance, batches: list[str]) -> dict[str, int | None]:
    """Return the row count each batch's last ``prompts`` materialization recorded (None: no record or no count),
    reading the records newest first, a page at a time, until every batch has its latest."""
    latest: dict[str, dg.AssetMaterialization] = {}
    cursor = None
    while len(latest) < len(batches):
        missing = [b for b in batches if b not in latest]
        records_filter = dg.AssetRecordsFilter(asset_key=PROMPTS, asset_partitions=missing)
        page = instance.fetch_materializations(records_filter, limit=len(missing), cursor=cursor)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is not None and record.partition_key is not None:
                latest.setdefault(record.partition_key, materialization)
        if not page.has_more:
            break
        cursor = page.cursor
    counts: dict[str, int | None] = {}
    for batch in batches:
        count = latest[batch].metadata.get("dagster/row_count") if batch in latest else None
        counts[batch] = None if count is None else int(count.value)
    return counts


def ledger_result(
    stage: str, upstream: pl.DataFrame, rows: pl.DataFrame, max_rate: float, batch: pl.DataFrame | None = None
) -> dg.AssetCheckResult:
    """Return the ledger check of ``stage``: no row of the batch missing (``batch``'s row ids when known, else
    ``upstream``'s rows), every non-ok row explained, failure rate."""
    keyed = "row_id" in rows.columns and rows["row_id"].null_count() == 0
    expected = batch if batch is not None and keyed else upstream
    ids = [c for c in ("row_id", "prompt_id") if c in rows.columns and c in expected.columns]
    ledger_rows = rows.select(*ids, "status", "failed_stage", "reason").to_dicts()
    check = check_ledger(expected.select(ids).to_dicts(), ledger_rows, stage)
    reasons = Counter(r.split(":")[0] for r in rows.filter(pl.col("failed_stage") == stage)["reason"].to_list())
    passed = check.passed and check.failure_rate <= max_rate
    return dg.AssetCheckResult(
        check_name=LEDGER,
        passed=passed,
        description=None if passed else _message(stage, check, reasons, max_rate),
        metadata={
            "failure_rate": dg.MetadataValue.float(round(check.failure_rate, 4)),
            "failed_here": dg.MetadataValue.int(check.failed_here),
            "missing_prompts": dg.MetadataValue.int(len(check.missing)),
            "rows_of_other_prompts": dg.MetadataValue.int(len(check.unknown)),
            "rows_without_reason": dg.MetadataValue.int(check.unexplained),
            "reasons": dg.MetadataValue.json(dict(reasons.most_common())),
        },
    )


def batch_evaluation(
    context: dg.AssetExecutionContext, result: dg.AssetCheckResult, batch: str
) -> dg.AssetCheckEvaluation:
    """Return ``result`` as the evaluation of ``batch`` in a step covering several batches; a failed blocking check
    holds the batch back (see the module docstring) rather than failing the step."""
    name = str(result.check_name)
    spec = context.assets_def.get_spec_for_check_key(dg.AssetCheckKey(context.asset_key, name))
    held = spec.blocking and not result.passed
    description = f"{result.description}. {HELD_BACK}" if held else result.description
    return dg.AssetCheckEvaluation(
        asset_key=context.asset_key,
        check_name=name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=description,
        blocking=spec.blocking and not held,
        partition=batch,
    )


HELD_BACK = (
    "This run covered several batches, so this one was held back instead of stopping the step: the later stages "
    "of the run mark its rows failed without calling a model. Fix the cause and re-materialize the batch."
)


def held_back(context: dg.AssetExecutionContext, batches: list[str]) -> dict[str, str]:
    """Return the batches of ``batches`` whose direct upstream asset failed its ledger check in this run, each with
    that upstream asset's name."""
    upstream = set(context.assets_def.keys_by_input_name.values())
    logs = context.instance.all_logs(context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    held: dict[str, str] = {}
    for log in logs:
        evaluation = log.dagster_event.event_specific_data if log.dagster_event else None
        if (
            isinstance(evaluation, dg.AssetCheckEvaluation)
            and evaluation.check_name == LEDGER
            and not evaluation.passed
            and evaluation.asset_key in upstream
            and evaluation.partition in batches
        ):
            held.setdefault(str(evaluation.partition), evaluation.asset_key.to_user_string())
    return held


def warning_spec(name: str, partitions: dg.PartitionsDefinition, limit: float) -> dg.AssetCheckSpec:
    """Return quality warning ``name`` (DUPLICATES, EMPTY_ANSWERS, PARSE_FAILURES or TIES) on its asset, per batch."""
    asset, description = _WARNINGS[name]
    return _partitioned_spec(
        name, asset=asset, partitions_def=partitions, description=f"{description} Limit {limit:.0%}."
    )


def rate_result(name: str, count: int, total: int, limit: float) -> dg.AssetCheckResult:
    """Return warning ``name``: ``count`` of ``total`` against ``limit`` (nothing to count passes)."""
    rate = count / total if total else 0.0
    passed = rate <= limit
    return dg.AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else f"{count} of {total} ({rate:.0%}) over the limit of {limit:.0%}",
        metadata={
            "rate": dg.MetadataValue.float(round(rate, 4)),
            "count": dg.MetadataValue.int(count),
            "of": dg.MetadataValue.int(total),
            "limit": dg.MetadataValue.float(limit),
        },
    )


def _partitioned_spec(name: str, **spec: Any) -> dg.AssetCheckSpec:
    # A check result per partition is a preview API in Dagster 1.13; its warning would repeat at every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, **spec)


def _message(stage: str, check: LedgerCheck, reasons: Counter[str], max_rate: float) -> str:
    if check.missing or check.unknown or check.unexplained:
        return (
            f"{stage} lost rows: {len(check.missing)} prompts missing, {len(check.unknown)} rows of prompts not in "
            f"the batch, {check.unexplained} non-ok rows without a reason"
        )
    top = ", ".join(f"{k} ({v})" for k, v in reasons.most_common(3))
    return (
        f"{check.failure_rate:.0%} of {stage} rows failed (limit {max_rate:.0%}): {top}. "
        "Look at the reasons in the asset's rows, fix the endpoint or input, and re-materialize the "
        "partition: completed calls come from the cache."
    )
