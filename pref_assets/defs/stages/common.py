"""What every pipeline asset shares: its Dagster options, the LLM call wrapper, and the per-batch loop.

A step covers one batch, or a range of batches when a backfill groups them into one run
(``backfill.partitions_per_run``). ``batch_inputs`` gives each batch its input frames, ``call_batches`` sends
every batch's LLM calls through one request loop (the endpoint stays busy across batch boundaries) and splits the
answers back, and ``materialize`` stores each batch as its own file with its own metadata and check results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import dagster as dg
import polars as pl

from pref_assets.clients.llm import ChatResult, EndpointConfigError
from pref_assets.clients.runner import Budget, EndpointParkedError, Prices, run_calls
from pref_assets.core import status
from pref_assets.core.calls import Call
from pref_assets.core.ids import row_id
from pref_assets.core.rows import PromptRow
from pref_assets.defs import schemas
from pref_assets.defs.batches import call_through_batches, waits_for_batches
from pref_assets.defs.checks import batch_evaluation, held_back, ledger_spec
from pref_assets.defs.io_manager import FRAME
from pref_assets.defs.metadata import preview, status_metadata
from pref_assets.defs.resources import LLMResource
from pref_assets.settings import Settings

GROUP = "preference"
CODE_VERSION = "1"
# Downstream assets follow a new or changed upstream partition when the automation sensor is on (it is off by
# default: these steps pay for LLM calls), never past a failed blocking check.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
# Steps that call LLMs share one pool (its limit is in dagster.yaml) and retry a failed step with backoff;
# completed calls come from the request cache, so a retry re-sends only what failed.
LLM_POOL = "llm"
LLM_RETRY = dg.RetryPolicy(max_retries=2, delay=20, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
HELD_REASON = "held_back"
T = TypeVar("T")
# `backfill_policy` is a beta parameter of `@asset` in Dagster 1.13; its warning would repeat at every load.
warnings.filterwarnings(
    "ignore", message=r"Parameter `backfill_policy` .* is currently in beta", category=dg.BetaWarning
)
# What an asset body yields: its MaterializeResult, and in a step covering several batches the check outputs and
# each batch's check evaluations.
StepEvents = Iterator[dg.MaterializeResult | dg.Output | dg.AssetCheckEvaluation]


@dataclass(frozen=True)
class Stage:
    """The configuration every asset builder reads."""

    settings: Settings
    partitions: dg.PartitionsDefinition

    def options(self, row_type: type, *, follows: bool = True, calls_llm: bool = False) -> dict[str, Any]:
        """Return the ``@dg.asset`` options of a stage storing ``row_type`` rows."""
        options: dict[str, Any] = {
            "partitions_def": self.partitions,
            "group_name": GROUP,
            "io_manager_key": "parquet_io",
            "dagster_type": FRAME,
            "metadata": {"dagster/column_schema": schemas.column_schema(row_type)},
        }
        options["backfill_policy"] = backfill_policy(self.settings)
        if follows:
            options["automation_condition"] = FOLLOW_UPSTREAM
        if calls_llm:
            options |= {"pool": LLM_POOL, "retry_policy": LLM_RETRY}
        if calls_llm and any(e.mode == "batch" for e in self.settings.endpoints):
            options["output_required"] = False  # a step waiting for batch jobs yields nothing
        return options

    def waits_for_batches(self, fn: Callable[..., StepEvents]) -> Callable[..., StepEvents]:
        """Wrap an LLM asset's body for batch mode (see ``defs.batches``); unchanged when no endpoint uses it."""
        return waits_for_batches(self.settings, fn)

    def ledger(self, stage: str) -> dg.AssetCheckSpec:
        """Return the blocking ledger check of ``stage``."""
        return ledger_spec(stage, self.settings.max_failure_rate, self.partitions)

    def budget(self) -> Budget:
        """Return a fresh spending cap for one LLM step."""
        return Budget(Prices(self.settings.prices()), self.settings.budget_usd_per_step)


def backfill_policy(settings: Settings) -> dg.BackfillPolicy:
    """Return how a backfill groups batches into runs: ``backfill.partitions_per_run`` a run, or one run."""
    if settings.backfill.single_run:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill.partitions_per_run)


@dataclass(frozen=True)
class BatchOutput:
    """One batch's rows, the columns its preview shows, its check results and extra metadata."""

    frame: pl.DataFrame
    columns: list[str]
    checks: list[dg.AssetCheckResult]
    extra: dict[str, object] = field(default_factory=dict)


def batch_inputs(
    context: dg.AssetExecutionContext, **inputs: dict[str, pl.DataFrame]
) -> dict[str, dict[str, pl.DataFrame]]:
    """Return each batch of the step with its input frames by input name; the first input is the one the stage's
    rows come from. In a step covering several batches, a batch whose upstream failed its ledger check in this run
    is held back: the ok rows of its first input come back failed here, its other inputs empty."""
    batches = list(context.partition_keys)
    held = held_back(context, batches) if len(batches) > 1 else {}
    stage = context.asset_key.to_user_string()
    out: dict[str, dict[str, pl.DataFrame]] = {}
    for batch in batches:
        frames = {name: value[batch] for name, value in inputs.items()}
        if batch in held:
            first, *rest = frames
            frames = {first: hold(frames[first], stage, held[batch])} | {n: frames[n].head(0) for n in rest}
        out[batch] = frames
    return out


def hold(frame: pl.DataFrame, stage: str, upstream: str) -> pl.DataFrame:
    """Return ``frame`` with its ok rows failed at ``stage``: ``upstream`` failed its ledger check for the batch."""
    ok = pl.col("status") == status.OK
    reason = f"{HELD_REASON}: {upstream} failed its ledger check for this batch"
    return frame.with_columns(
        pl.when(ok).then(pl.lit(status.FAILED)).otherwise(pl.col("status")).alias("status"),
        pl.when(ok).then(pl.lit(stage)).otherwise(pl.col("failed_stage")).alias("failed_stage"),
        pl.when(ok).then(pl.lit(reason)).otherwise(pl.col("reason")).alias("reason"),
    )


def split(items: Sequence[T], sizes: Mapping[str, int]) -> dict[str, list[T]]:
    """Return ``items`` cut into consecutive runs of ``sizes`` (batch -> count), in order."""
    out, start = {}, 0
    for batch, size in sizes.items():
        out[batch], start = list(items[start : start + size]), start + size
    return out


def prompt_rows(prompts: pl.DataFrame, batch: str) -> list[PromptRow]:
    """Return the batch's prompt rows; rows stored before row ids existed get theirs (batch key and position)."""
    rows = schemas.from_frame(prompts, PromptRow)
    return [r if r.row_id else replace(r, row_id=row_id(batch, i)) for i, r in enumerate(rows)]


def call_llm(
    context: dg.AssetExecutionContext, llm: LLMResource, budget: Budget, calls: list[Call]
) -> list[ChatResult]:
    """Send ``calls`` through the shared request loop; a parked endpoint or a bad configuration fails the step."""
    try:
        if any(e.mode == "batch" for e in llm.endpoints):
            return call_through_batches(context, llm, budget, calls)
        llm.prepare({call.endpoint for call in calls}, context.log.info)
        return run_calls(calls, llm.client, budget=budget, log=context.log.info)
    except (EndpointParkedError, EndpointConfigError) as err:
        # A step retry would meet the same open breaker or configuration; the user reruns once it is mended.
        raise dg.Failure(description=str(err), allow_retries=False) from err


def call_batches(
    context: dg.AssetExecutionContext, llm: LLMResource, budget: Budget, calls: Mapping[str, list[Call]]
) -> dict[str, list[ChatResult]]:
    """Send every batch's ``calls`` through one request loop; return the answers per batch."""
    flat = [call for batch_calls in calls.values() for call in batch_calls]
    return split(call_llm(context, llm, budget, flat), {batch: len(c) for batch, c in calls.items()})


def result(out: pl.DataFrame, columns: list[str], checks: list[dg.AssetCheckResult], **extra: object) -> BatchOutput:
    """Return one batch's output: its frame, the columns to preview, check results and extra metadata."""
    return BatchOutput(out, columns, checks, extra)


def materialize(context: dg.AssetExecutionContext, outputs: Mapping[str, BatchOutput]) -> StepEvents:
    """Yield what stores each batch as its own file with its own metadata and check results."""
    if len(outputs) == 1 and context.has_partition_key:
        (one,) = outputs.values()
        yield dg.MaterializeResult(value=one.frame, metadata=_metadata(one), check_results=one.checks)
        return
    for batch, output in outputs.items():
        context.add_asset_metadata(_metadata(output), partition_key=batch)
    yield dg.MaterializeResult(value={batch: output.frame for batch, output in outputs.items()})
    selected = context.selected_asset_check_keys
    for name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in selected:
            yield dg.Output(None, output_name=name)
    for batch, output in outputs.items():
        yield from (batch_evaluation(context, check, batch) for check in output.checks)


def _metadata(output: BatchOutput) -> dict[str, Any]:
    metadata = status_metadata(output.frame) | preview(output.frame, output.columns)
    extra = output.extra.items()
    return metadata | {k: v if isinstance(v, dg.MetadataValue) else dg.MetadataValue.text(str(v)) for k, v in extra}
