"""`prompts`: one batch of source rows, normalized; bad rows kept with their reason."""

import dagster as dg

from pref_assets.core.ids import source_row_ids
from pref_assets.core.prompts import PromptSourceError, normalize_rows
from pref_assets.core.quality import duplicate_prompts
from pref_assets.core.rows import PromptRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import DUPLICATES, rate_result, warning_spec
from pref_assets.defs.sensors import HUB_REVISION_TAG
from pref_assets.defs.stages.common import CODE_VERSION, Stage, result
from pref_assets.sources import read_batch
from pref_assets.sources.hub import pinned


def build_prompts(stage: Stage) -> dg.AssetsDefinition:
    """Return the `prompts` asset."""
    settings = stage.settings

    @dg.asset(description="One batch of prompts: ids, instructions, topics; bad rows kept with a reason.",
              code_version=CODE_VERSION, check_specs=[warning_spec(DUPLICATES, stage.partitions, 0.0)],
              **stage.options(PromptRow, follows=False))  # fmt: skip
    def prompts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        try:
            source = pinned(settings.source, context.run.tags.get(HUB_REVISION_TAG))
            raw, (start, stop) = read_batch(source, context.partition_key, settings.batch_size)
            row_key = source_row_ids(context.partition_key, settings.batch_size)
            rows = normalize_rows(
                raw, settings.source.columns, max_chars=settings.source.max_prompt_chars, row_key=row_key
            )
        except PromptSourceError as err:
            raise dg.Failure(description=f"prompt source: {err}") from err
        if start >= len(rows):
            raise dg.Failure(
                description=f"prompt source: {context.partition_key} covers rows {start + 1}-{stop}, but the source "
                f"now has {len(rows)} rows (it shrank since the partitions were listed). Nothing was written.",
                allow_retries=False,
            )
        batch = rows[start:stop]
        out = schemas.to_frame(batch, PromptRow)
        cols = ["row_id", "prompt_id", "topic", "instruction", "status", "reason"]
        return result(
            out, cols, [rate_result(DUPLICATES, *duplicate_prompts(batch), 0.0)], source=settings.source.kind
        )

    return prompts
