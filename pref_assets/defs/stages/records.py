"""`argilla_records`: each rated prompt's review record, pushed to Argilla when a URL is configured."""

import json

import dagster as dg
import polars as pl

from pref_assets.clients.argilla import ArgillaError, push_records
from pref_assets.core import status
from pref_assets.core.records import build_record
from pref_assets.core.rows import RecordRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import batch_rows, ledger_result
from pref_assets.defs.resources import ArgillaResource
from pref_assets.defs.stages.common import CODE_VERSION, Stage, result

STAGE = "argilla_records"


def build_records(stage: Stage) -> dg.AssetsDefinition:
    """Return the `argilla_records` asset."""
    n_answers, max_rate = len(stage.settings.generators), stage.settings.max_failure_rate

    @dg.asset(description="Records for human review in Argilla; pushed when an Argilla URL is configured.",
              code_version=CODE_VERSION, check_specs=[stage.ledger(STAGE)], **stage.options(RecordRow))  # fmt: skip
    def argilla_records(
        context: dg.AssetExecutionContext, argilla: ArgillaResource, ratings: pl.DataFrame
    ) -> dg.MaterializeResult:
        rows = record_rows(ratings.to_dicts(), argilla.dataset, context.partition_key)
        target = "not pushed: no Argilla URL configured; records kept in this asset's Parquet file"
        if argilla.url:
            client = argilla.client()
            try:
                rows, target = push_records(client, argilla.dataset, argilla.workspace, rows, n_answers)
            except ArgillaError as err:
                raise dg.Failure(description=f"Argilla: {err}") from err
            finally:
                client.close()
        out = schemas.frame(rows, schemas.ARGILLA_RECORDS)
        cols = ["prompt_id", "record_id", "pushed", "status", "reason"]
        return result(out, cols, [ledger_result(STAGE, ratings, out, max_rate, batch_rows(context))], argilla=target)

    return argilla_records


def record_rows(rows: list[dict], dataset: str, batch: str) -> list[dict]:
    """Return the record row of each rated row: the record as JSON for an ok row, the status carried otherwise."""
    out = []
    for row in rows:
        base = {
            "row_id": row.get("row_id"),
            "prompt_id": row["prompt_id"],
            "record_id": None,
            "record": None,
            "pushed": False,
            "push_error": None,
        }
        if row["status"] != status.OK:
            out.append(base | {k: row[k] for k in ("status", "failed_stage", "reason")})
            continue
        record = build_record(row, dataset=dataset, batch=batch)
        out.append(base | {"record_id": record["id"], "record": json.dumps(record, ensure_ascii=False)} | status.ok())
    return out
