"""`grouped`: one row per prompt, its answers aligned to the configured model order."""

import dagster as dg
import polars as pl

from pref_assets.core.grouping import group_generations
from pref_assets.core.rows import GenerationRow, GroupedRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import batch_rows, ledger_result
from pref_assets.defs.stages.common import (
    CODE_VERSION,
    BatchOutput,
    Stage,
    StepEvents,
    batch_inputs,
    materialize,
    prompt_rows,
    result,
)

STAGE = "grouped"


def build_grouped(stage: Stage) -> dg.AssetsDefinition:
    """Return the `grouped` asset."""
    names = [g.name for g in stage.settings.generators]
    counts = {g.name: g.num_generations for g in stage.settings.generators}
    slots = stage.settings.candidates_per_prompt
    max_rate = stage.settings.max_failure_rate

    @dg.asset(description="One row per prompt: answers, candidate ids and model names in aligned lists, gaps visible.",
              code_version=CODE_VERSION, check_specs=[stage.ledger(STAGE)], **stage.options(GroupedRow))  # fmt: skip
    def grouped(
        context: dg.AssetExecutionContext,
        prompts: dict[str, pl.DataFrame],
        generations_by_model: dict[str, pl.DataFrame],
    ) -> StepEvents:
        batches = batch_inputs(context, prompts=prompts, generations=generations_by_model)

        def output(batch: str, inputs: dict[str, pl.DataFrame]) -> BatchOutput:
            generations = schemas.from_frame(inputs["generations"], GenerationRow)
            rows = group_generations(prompt_rows(inputs["prompts"], batch), generations, names, counts)
            out = schemas.to_frame(rows, GroupedRow)
            cols = ["prompt_id", "generation_models", "generation_status", "status", "reason"]
            ledger = ledger_result(STAGE, inputs["prompts"], out, max_rate, batch_rows(context, batch))
            return result(out, cols, [ledger], candidates_per_prompt=dg.MetadataValue.int(slots))

        yield from materialize(context, {batch: output(batch, inputs) for batch, inputs in batches.items()})

    return grouped
