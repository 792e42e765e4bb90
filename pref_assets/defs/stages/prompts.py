"""`prompts`: one batch of source rows, normalized; bad rows kept with their reason.

Before any model sees a prompt, it is checked against the configured benchmarks (``decontaminate:``, failed
``contaminated``) and against the earlier prompts of the whole source (``dedupe:``, failed ``near_duplicate``): the
near-duplicate index is built with the same benchmarks, so a contaminated prompt is never the one a near-duplicate
names.
"""

import dagster as dg

from pref_assets.core.decontam import mark_contaminated
from pref_assets.core.dedupe import NEAR_DUPLICATE, mark_near_duplicates
from pref_assets.core.ids import source_row_ids
from pref_assets.core.prompts import PromptSourceError, normalize_rows
from pref_assets.core.quality import duplicate_prompts
from pref_assets.core.rows import PromptRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import DUPLICATES, rate_result, warning_spec
from pref_assets.defs.sensors import HUB_REVISION_TAG
from pref_assets.defs.stages.common import CODE_VERSION, BatchOutput, Stage, StepEvents, materialize, result
from pref_assets.settings import DedupeSettings
from pref_assets.sources.batches import read_source_batch
from pref_assets.sources.benchmarks import benchmark_indexes
from pref_assets.sources.hub import pinned


def build_prompts(stage: Stage) -> dg.AssetsDefinition:
    """Return the `prompts` asset."""
    settings = stage.settings

    @dg.asset(description="One batch of prompts: ids, instructions, topics; bad rows (repeats, near-duplicates, "
                          "benchmark overlaps) kept with a reason.",
              code_version=CODE_VERSION, check_specs=[warning_spec(DUPLICATES, stage.partitions, 0.0)],
              **stage.options(PromptRow, follows=False))  # fmt: skip
    def prompts(context: dg.AssetExecutionContext) -> StepEvents:
        try:
            benchmarks = benchmark_indexes(settings.decontaminate)
        except PromptSourceError as err:
            raise dg.Failure(description=f"decontaminate: {err}", allow_retries=False) from err

        def output(batch: str) -> BatchOutput:
            try:
                source = pinned(settings.source, context.run.tags.get(HUB_REVISION_TAG))
                read = read_source_batch(source, batch, settings.batch_size, settings.storage_dir, settings.dedupe,
                                         benchmarks)  # fmt: skip
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
            kept, contaminated = mark_contaminated(kept, benchmarks)
            kept = mark_near_duplicates(kept, read.near)
            out = schemas.to_frame(kept, PromptRow)
            cols = ["row_id", "prompt_id", "topic", "instruction", "status", "reason"]
            near = sum(1 for r in kept if (r.reason or "").startswith(NEAR_DUPLICATE))
            extra = {
                "source": settings.source.kind,
                "contaminated_by_benchmark": dg.MetadataValue.json(contaminated),
                "contaminated": dg.MetadataValue.int(sum(contaminated.values())),
                "near_duplicates": dg.MetadataValue.int(near),
                "near_duplicate_threshold": _threshold(settings.dedupe),
                "benchmarks": dg.MetadataValue.json({b.name: {"rows": b.rows, "ngram_words": b.ngram_words,
                                                              "min_overlap": b.min_overlap} for b in benchmarks}),
            }  # fmt: skip
            return result(out, cols, [rate_result(DUPLICATES, *duplicate_prompts(kept), 0.0)], **extra)

        yield from materialize(context, {batch: output(batch) for batch in context.partition_keys})

    return prompts


def _threshold(dedupe: DedupeSettings) -> dg.MetadataValue:
    if not dedupe.near_duplicates:
        return dg.MetadataValue.text("off")
    return dg.MetadataValue.float(dedupe.near_duplicate_threshold)
