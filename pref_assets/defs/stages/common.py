"""What every pipeline asset shares: its Dagster options, the LLM call wrapper, and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.clients.llm import ChatResult, EndpointConfigError
from pref_assets.clients.runner import Budget, EndpointParkedError, Prices, run_calls
from pref_assets.core.calls import Call
from pref_assets.core.ids import row_id
from pref_assets.core.rows import PromptRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import ledger_spec
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
        if follows:
            options["automation_condition"] = FOLLOW_UPSTREAM
        if calls_llm:
            options |= {"pool": LLM_POOL, "retry_policy": LLM_RETRY}
        return options

    def ledger(self, stage: str) -> dg.AssetCheckSpec:
        """Return the blocking ledger check of ``stage``."""
        return ledger_spec(stage, self.settings.max_failure_rate, self.partitions)

    def budget(self) -> Budget:
        """Return a fresh spending cap for one LLM step."""
        return Budget(Prices(self.settings.prices()), self.settings.budget_usd_per_step)


def prompt_rows(prompts: pl.DataFrame, batch: str) -> list[PromptRow]:
    """Return the batch's prompt rows; rows stored before row ids existed get theirs (batch key and position)."""
    rows = schemas.from_frame(prompts, PromptRow)
    return [r if r.row_id else replace(r, row_id=row_id(batch, i)) for i, r in enumerate(rows)]


def call_llm(
    context: dg.AssetExecutionContext, llm: LLMResource, budget: Budget, calls: list[Call]
) -> list[ChatResult]:
    """Send ``calls`` through the shared request loop; a parked endpoint or a bad configuration fails the step."""
    try:
        return run_calls(calls, llm.client, budget=budget, log=context.log.info)
    except (EndpointParkedError, EndpointConfigError) as err:
        # A step retry would meet the same open breaker or configuration; the user reruns once it is mended.
        raise dg.Failure(description=str(err), allow_retries=False) from err


def result(
    out: pl.DataFrame, columns: list[str], checks: list[dg.AssetCheckResult], **extra: object
) -> dg.MaterializeResult:
    """Return the frame with its status counts, a preview of ``columns``, check results and extra metadata."""
    metadata = status_metadata(out) | preview(out, columns)
    metadata |= {k: v if isinstance(v, dg.MetadataValue) else dg.MetadataValue.text(str(v)) for k, v in extra.items()}
    return dg.MaterializeResult(value=out, metadata=metadata, check_results=checks)
