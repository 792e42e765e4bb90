"""`generations_by_model`: each generator's answers (``num_generations`` candidates) to each prompt of the batch."""

from collections import Counter
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.core.generation import Planned, generation_row, plan_generations, upstream_failure_row
from pref_assets.core.principles import PRINCIPLES_VERSION, principles_version
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
from pref_assets.settings import Settings

STAGE = "generations_by_model"


def build_generations(stage: Stage) -> dg.AssetsDefinition:
    """Return the `generations_by_model` asset."""
    settings, generators = stage.settings, stage.settings.generators
    quality, max_rate = settings.quality, settings.max_failure_rate
    checks = [stage.ledger(STAGE), warning_spec(EMPTY_ANSWERS, stage.partitions, quality.max_empty_answer_rate)]
    principles = settings.principle_texts()
    options = generation_options(settings)

    @dg.asset(description="Each generator's answers to each prompt, with tokens, latency, errors and principles.",
              code_version=f"{CODE_VERSION}-{PRINCIPLES_VERSION[:12]}", check_specs=checks,
              **stage.options(GenerationRow, calls_llm=True))  # fmt: skip
    @stage.waits_for_batches
    def generations_by_model(
        context: dg.AssetExecutionContext, llm: LLMResource, prompts: dict[str, pl.DataFrame]
    ) -> StepEvents:
        batches = batch_inputs(context, prompts=prompts)
        rows = {batch: prompt_rows(inputs["prompts"], batch) for batch, inputs in batches.items()}
        plans = {batch: plan_generations(r, generators, principles) for batch, r in rows.items()}
        answers = call_batches(context, llm, stage.budget(), {b: [x.call for x in p] for b, p in plans.items()})

        def output(batch: str) -> BatchOutput:
            planned = zip(plans[batch], answers[batch], strict=True)
            out_rows = [generation_row(x, answer) for x, answer in planned]
            out_rows += [upstream_failure_row(p) for p in rows[batch] if not p.ok]
            out = schemas.to_frame(out_rows, GenerationRow)
            checks = [
                ledger_result(STAGE, batches[batch]["prompts"], out, max_rate, batch_rows(context, batch)),
                rate_result(EMPTY_ANSWERS, *empty_answers(out_rows), quality.max_empty_answer_rate),
            ]
            cost = cost_usd(out, {g.name: g for g in generators})
            cols = ["prompt_id", "model", "generation", "status", "reason"]
            drawn = principle_counts(plans[batch])
            return result(out, cols, checks, **call_metadata(out, "model"), **cost, **options, **drawn)

        yield from materialize(context, {batch: output(batch) for batch in batches})

    return generations_by_model


def generation_options(settings: Settings) -> dict[str, dg.MetadataValue]:
    """Return the generation options every batch's metadata shows: candidates per generator and per prompt, system
    prompts, and the principles (names and a hash of their texts)."""
    texts = settings.principle_texts()
    return {
        "num_generations": dg.MetadataValue.json({g.name: g.num_generations for g in settings.generators}),
        "candidates_per_prompt": dg.MetadataValue.int(settings.candidates_per_prompt),
        "system_prompts": dg.MetadataValue.json({g.name: g.system_prompt for g in settings.generators}),
        "principles": dg.MetadataValue.json(list(texts)),
        "principles_version": dg.MetadataValue.text(principles_version(texts) if texts else "none"),
    }


def principle_counts(plans: list[Planned]) -> dict[str, Any]:
    """Return how many of the batch's answers were asked under each principle."""
    if not any(x.principle for x in plans):
        return {}
    return {"answers_by_principle": dg.MetadataValue.json(dict(Counter(x.principle for x in plans).most_common()))}
