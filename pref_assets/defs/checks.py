"""Asset checks per batch: the row ledger (blocking) and quality warnings."""

from __future__ import annotations

import inspect
from collections import Counter

import dagster as dg
import polars as pl

from pref_assets.core.ledger import LedgerCheck, check_ledger

STAGES = ("generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records", "preference_pairs")


def build_checks(partitions: dg.PartitionsDefinition, max_failure_rate: float) -> list[dg.AssetChecksDefinition]:
    """Return a blocking ledger check per stage, plus duplicate-prompt and tie-rate warnings."""
    return [
        *(_ledger_check(stage, partitions, max_failure_rate) for stage in STAGES),
        _duplicates(partitions),
    ]


def _ledger_check(stage: str, partitions: dg.PartitionsDefinition, max_rate: float) -> dg.AssetChecksDefinition:
    def ledger(**inputs: pl.DataFrame) -> dg.AssetCheckResult:
        rows, prompts = inputs[stage], inputs["prompts"]
        check = check_ledger(prompts.to_dicts(), rows.to_dicts(), stage)
        reasons = Counter(r.split(":")[0] for r in rows.filter(pl.col("failed_stage") == stage)["reason"].to_list())
        passed = check.passed and check.failure_rate <= max_rate
        return dg.AssetCheckResult(
            passed=passed,
            description=None if passed else _message(stage, check, reasons, max_rate),
            metadata={
                "failure_rate": dg.MetadataValue.float(round(check.failure_rate, 4)),
                "failed_here": dg.MetadataValue.int(check.failed_here),
                "missing_prompts": dg.MetadataValue.int(len(check.missing)),
                "rows_without_reason": dg.MetadataValue.int(check.unexplained),
                "reasons": dg.MetadataValue.json(dict(reasons.most_common())),
            },
        )

    # Dagster hands the checked asset to the parameter named after it: name it after this stage.
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(name, kind, annotation=pl.DataFrame) for name in (stage, "prompts")]
    ledger.__signature__ = inspect.Signature(params, return_annotation=dg.AssetCheckResult)  # type: ignore[attr-defined]
    return dg.asset_check(
        name="ledger",
        asset=stage,
        additional_ins={"prompts": dg.AssetIn("prompts")},
        blocking=True,
        partitions_def=partitions,
        description=f"Every prompt of the batch is in {stage}, ok or with a reason; "
        f"at most {max_rate:.0%} of its rows failed at this stage.",
    )(ledger)


def _message(stage: str, check: LedgerCheck, reasons: Counter[str], max_rate: float) -> str:
    if check.missing or check.unexplained:
        return (
            f"{stage} lost rows: {len(check.missing)} prompts missing, {check.unexplained} non-ok rows without a reason"
        )
    top = ", ".join(f"{k} ({v})" for k, v in reasons.most_common(3))
    return (
        f"{check.failure_rate:.0%} of {stage} rows failed (limit {max_rate:.0%}): {top}. "
        "Look at the reasons in the asset's rows, fix the endpoint or input, and re-materialize the "
        "partition: completed calls come from the cache."
    )


def _duplicates(partitions: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset="prompts", partitions_def=partitions, description="No duplicate prompts in the batch.")
    def no_duplicate_prompts(prompts: pl.DataFrame) -> dg.AssetCheckResult:
        dupes = prompts.filter(pl.col("reason").str.starts_with("duplicate")).height
        return dg.AssetCheckResult(
            passed=dupes == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"duplicates": dg.MetadataValue.int(dupes)},
        )

    return no_duplicate_prompts
