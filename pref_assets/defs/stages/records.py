"""`argilla_records`: each rated prompt's review record, pushed to Argilla when a URL is configured."""

import dagster as dg
import polars as pl

from pref_assets.clients.argilla import ArgillaError, push_records
from pref_assets.core.records import record_rows
from pref_assets.core.rows import RatingRow, RecordRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import batch_rows, ledger_result
from pref_assets.defs.resources import ArgillaResource
from pref_assets.defs.stages.common import (
    CODE_VERSION,
    BatchOutput,
    Stage,
    StepEvents,
    batch_inputs,
    materialize,
    result,
)

STAGE = "argilla_records"


def build_records(stage: Stage) -> dg.AssetsDefinition:
    """Return the `argilla_records` asset."""
    n_answers, max_rate = stage.settings.candidates_per_prompt, stage.settings.max_failure_rate

    @dg.asset(description="Records for human review in Argilla; pushed when an Argilla URL is configured.",
              code_version=CODE_VERSION, check_specs=[stage.ledger(STAGE)], **stage.options(RecordRow))  # fmt: skip
    def argilla_records(
        context: dg.AssetExecutionContext, argilla: ArgillaResource, ratings: dict[str, pl.DataFrame]
    ) -> StepEvents:
        def output(batch: str, inputs: dict[str, pl.DataFrame]) -> BatchOutput:
            rated = schemas.from_frame(inputs["ratings"], RatingRow)
            rows = record_rows(rated, dataset=argilla.dataset, batch=batch)
            target = "not pushed: no Argilla URL configured; records kept in this asset's Parquet file"
            if argilla.url:
                rows, target = _push(argilla, rows, n_answers)
            out = schemas.to_frame(rows, RecordRow)
            cols = ["prompt_id", "record_id", "pushed", "status", "reason"]
            ledger = ledger_result(STAGE, inputs["ratings"], out, max_rate, batch_rows(context, batch))
            return result(out, cols, [ledger], argilla=target)

        batches = batch_inputs(context, ratings=ratings)
        yield from materialize(context, {batch: output(batch, inputs) for batch, inputs in batches.items()})

    return argilla_records


def _push(argilla: ArgillaResource, rows: list[RecordRow], n_answers: int) -> tuple[list[RecordRow], str]:
    client = argilla.client()
    try:
        return push_records(client, argilla.dataset, argilla.workspace, rows, n_answers)
    except ArgillaError as err:
        raise dg.Failure(description=f"Argilla: {err}") from err
    finally:
        client.close()
