"""`generations_by_model`: each generator's answer to each prompt of the batch."""

import dagster as dg
import polars as pl

from pref_assets.core.generation import generation_row, plan_generations, upstream_failure_row
from pref_assets.core.quality import empty_answers
from pref_assets.core.rows import GenerationRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import EMPTY_ANSWERS, batch_rows, ledger_result, rate_result, warning_spec
from pref_assets.defs.metadata import call_metadata, cost_usd
from pref_assets.defs.resources import LLMResource
from pref_assets.defs.stages.common import (
    CODE_VERSION,
    BatchOutput,
    Stage,
    StepEvents,
    batch_inputs,
    call_batches,
    materialize,
    prompt_rows,
    result,
)

STAGE = "generations_by_model"


def build_generations(stage: Stage) -> dg.AssetsDefinition:
    """Return the `generations_by_model` asset."""
    settings, generators = stage.settings, stage.settings.generators
    quality, max_rate = settings.quality, settings.max_failure_rate
    checks = [stage.ledger(STAGE), warning_spec(EMPTY_ANSWERS, stage.partitions, quality.max_empty_answer_rate)]

    @dg.asset(description="Each generator's answer to each prompt, with tokens, latency and errors.",
              code_version=CODE_VERSION, check_specs=checks,
              **stage.options(GenerationRow, calls_llm=True))  # fmt: skip
    def generations_by_model(
        context: dg.AssetExecutionContext, llm: LLMResource, prompts: dict[str, pl.DataFrame]
    ) -> StepEvents:
        batches = batch_inputs(context, prompts=prompts)
        rows = {batch: prompt_rows(inputs["prompts"], batch) for batch, inputs in batches.items()}
        plans = {batch: plan_generations(r, generators) for batch, r in rows.items()}
        answers = call_batches(context, llm, stage.budget(), {b: [call for *_, call in p] for b, p in plans.items()})

        def output(batch: str) -> BatchOutput:
            planned = zip(plans[batch], answers[batch], strict=True)
            out_rows = [generation_row(p, name, answer) for (p, name, _), answer in planned]
            out_rows += [upstream_failure_row(p) for p in rows[batch] if not p.ok]
            out = schemas.to_frame(out_rows, GenerationRow)
            checks = [
                ledger_result(STAGE, batches[batch]["prompts"], out, max_rate, batch_rows(context, batch)),
                rate_result(EMPTY_ANSWERS, *empty_answers(out_rows), quality.max_empty_answer_rate),
            ]
            cost = cost_usd(out, {g.name: g for g in generators})
            cols = ["prompt_id", "model", "generation", "status", "reason"]
            return result(out, cols, checks, **call_metadata(out, "model"), **cost)

        yield from materialize(context, {batch: output(batch) for batch in batches})

    return generations_by_model
