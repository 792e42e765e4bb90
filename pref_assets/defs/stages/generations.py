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
from pref_assets.defs.stages.common import CODE_VERSION, Stage, call_llm, prompt_rows, result

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
        context: dg.AssetExecutionContext, llm: LLMResource, prompts: pl.DataFrame
    ) -> dg.MaterializeResult:
        rows = prompt_rows(prompts, context.partition_key)
        plan = plan_generations(rows, generators)
        results = call_llm(context, llm, stage.budget(), [call for _, _, call in plan])
        out_rows = [generation_row(p, name, answer) for (p, name, _), answer in zip(plan, results, strict=True)]
        out_rows += [upstream_failure_row(p) for p in rows if not p.ok]
        out = schemas.to_frame(out_rows, GenerationRow)
        cost = cost_usd(out, {g.name: g for g in generators})
        return result(
            out,
            ["prompt_id", "model", "generation", "status", "reason"],
            [
                ledger_result(STAGE, prompts, out, max_rate, batch_rows(context)),
                rate_result(EMPTY_ANSWERS, *empty_answers(out_rows), quality.max_empty_answer_rate),
            ],
            **call_metadata(out, "model"),
            **cost,
        )

    return generations_by_model
