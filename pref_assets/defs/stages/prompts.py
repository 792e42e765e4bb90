"""`prompts`: one batch of source rows, normalized; bad rows kept with their reason."""

import dagster as dg

from pref_assets.core.ids import source_row_ids
from pref_assets.core.prompts import PromptSourceError, normalize_rows
from pref_assets.core.quality import duplicate_prompts
from pref_assets.core.rows import PromptRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import DUPLICATES, rate_result, warning_spec
from pref_assets.defs.sensors import HUB_REVISION_TAG
from pref_assets.defs.stages.common import CODE_VERSION, BatchOutput, Stage, StepEvents, materialize, result
from pref_assets.sources.batches import read_source_batch
from pref_assets.sources.hub import pinned


def build_prompts(stage: Stage) -> dg.AssetsDefinition:
    """Return the `prompts` asset."""
    settings = stage.settings

    @dg.asset(description="One batch of prompts: ids, instructions, topics; bad rows kept with a reason.",
              code_version=CODE_VERSION, check_specs=[warning_spec(DUPLICATES, stage.partitions, 0.0)],
              **stage.options(PromptRow, follows=False))  # fmt: skip
    def prompts(context: dg.AssetExecutionContext) -> StepEvents:
        def output(batch: str) -> BatchOutput:
            try:
                source = pinned(settings.source, context.run.tags.get(HUB_REVISION_TAG))
                read = read_source_batch(source, batch, settings.batch_size, settings.storage_dir)
                start, stop = read.start, read.stop
                row_key = source_row_ids(batch, settings.batch_size)
                kept = normalize_rows(read.rows, settings.source.columns, max_chars=settings.source.max_prompt_chars,
                                      row_key=lambda i: row_key(read.start + i), originals=read.originals)  # fmt: skip
            except PromptSourceError as err:
                raise dg.Failure(description=f"prompt source: {err}") from err
            if start >= read.total:
                raise dg.Failure(
                    description=f"prompt source: {batch} covers rows {start + 1}-{stop}, but the source "
                    f"now has {read.total} rows (it shrank since the partitions were listed). Nothing was written.",
                    allow_retries=False,
                )
            out = schemas.to_frame(kept, PromptRow)
            cols = ["row_id", "prompt_id", "topic", "instruction", "status", "reason"]
            return result(
                out, cols, [rate_result(DUPLICATES, *duplicate_prompts(kept), 0.0)], source=settings.source.kind
            )

        yield from materialize(context, {batch: output(batch) for batch in context.partition_keys})

    return prompts
