"""The human review loop: labels read back from Argilla, the final pairs, and the sensor that reruns them.

``human_feedback`` reads the submitted responses to a batch's records; ``preference_pairs`` builds one pair
per prompt from the human labels where people answered and from the judge otherwise. The
``argilla_responses`` sensor asks for both when a batch's responses change.
"""

from collections import Counter

import dagster as dg
import polars as pl

from pref_assets.clients.argilla import ArgillaClient, ArgillaError
from pref_assets.core import feedback
from pref_assets.core.rows import FeedbackRow, PreferenceRow, RatingRow, RecordRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import batch_rows, ledger_result, ledger_spec
from pref_assets.defs.io_manager import FRAME
from pref_assets.defs.resources import ArgillaResource
from pref_assets.defs.stages.common import BatchOutput, StepEvents, backfill_policy, batch_inputs, materialize, result
from pref_assets.settings import Settings

GROUP = "review"
CODE_VERSION = "1"
SENSOR_NAME = "argilla_responses"


def build_review_assets(settings: Settings, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Return ``human_feedback`` and ``preference_pairs``, partitioned like the pipeline."""
    common = {"partitions_def": partitions, "group_name": GROUP, "io_manager_key": "parquet_io", "dagster_type": FRAME,
              "backfill_policy": backfill_policy(settings)}  # fmt: skip
    n_answers = settings.candidates_per_prompt
    policy = settings.pairs
    max_rate = settings.max_failure_rate

    @dg.asset(description="Human labels from Argilla per prompt: mean rating and rank per answer, counts.",
              code_version=CODE_VERSION, metadata=_columns(FeedbackRow), **common)  # fmt: skip
    def human_feedback(
        context: dg.AssetExecutionContext, argilla: ArgillaResource, argilla_records: dict[str, pl.DataFrame]
    ) -> StepEvents:
        def output(inputs: dict[str, pl.DataFrame]) -> BatchOutput:
            records = schemas.from_frame(inputs["records"], RecordRow)
            if argilla.url:
                rows, source = _read_feedback(argilla, records, n_answers)
            else:
                rows = [feedback.unconfigured_row(r) for r in records]
                source = "no Argilla URL configured: no human labels; preference_pairs uses the judge"
            out = schemas.to_frame(rows, FeedbackRow)
            cols = ["prompt_id", "human_ratings", "human_ranking", "submitted", "status", "reason"]
            agreement = feedback.agreement_from_records(records, rows, n_answers)
            return result(out, cols, [], argilla=dg.MetadataValue.text(source), **_agreement_metadata(agreement))

        batches = batch_inputs(context, records=argilla_records)
        yield from materialize(context, {batch: output(inputs) for batch, inputs in batches.items()})

    @dg.asset(description="The final pairs: decided by human labels where present, by the judge otherwise.",
              code_version=CODE_VERSION, check_specs=[ledger_spec("preference_pairs", max_rate, partitions)],
              metadata=_columns(PreferenceRow), **common)  # fmt: skip
    def preference_pairs(
        context: dg.AssetExecutionContext, ratings: dict[str, pl.DataFrame], human_feedback: dict[str, pl.DataFrame]
    ) -> StepEvents:
        def output(batch: str, inputs: dict[str, pl.DataFrame]) -> BatchOutput:
            rated = schemas.from_frame(inputs["ratings"], RatingRow)
            labelled = schemas.from_frame(inputs["feedback"], FeedbackRow)
            rows = feedback.preference_rows(rated, labelled, min_margin=policy.min_margin, rejected=policy.rejected)
            out = schemas.to_frame(rows, PreferenceRow)
            sources = Counter(r.pair_source for r in rows if r.ok)
            cols = ["prompt_id", "pair_source", "chosen_model", "rejected_model", "margin", "status", "reason"]
            check = ledger_result("preference_pairs", inputs["ratings"], out, max_rate, batch_rows(context, batch))
            return result(out, cols, [check], pairs_by_source=dg.MetadataValue.json(dict(sources)))

        batches = batch_inputs(context, ratings=ratings, feedback=human_feedback)
        yield from materialize(context, {batch: output(batch, inputs) for batch, inputs in batches.items()})

    return [human_feedback, preference_pairs]


def _agreement_metadata(agreement: feedback.Agreement) -> dict[str, dg.MetadataValue]:
    """Return how often the judge orders the answers as the reviewers do (rates are null without labels)."""

    def number(value: float | None) -> dg.MetadataValue:
        return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()

    return {
        "judge_human_pairwise_accuracy": number(agreement.pairwise_accuracy),
        "judge_human_kendall_tau": number(agreement.kendall_tau),
        "judge_human_top_agreement": number(agreement.top_agreement),
        "judge_human_agreement": dg.MetadataValue.json(agreement.as_dict()),
    }


def _columns(row_type: type) -> dict[str, dg.TableSchema]:
    return {"dagster/column_schema": schemas.column_schema(row_type)}


def _read_feedback(argilla: ArgillaResource, rows: list[RecordRow], n_answers: int) -> tuple[list[FeedbackRow], str]:
    ids = [r.prompt_id for r in rows if r.ok]
    try:
        with argilla.client() as client:
            found, progress = _fetch(client, argilla, ids)
    except ArgillaError as err:
        raise dg.Failure(description=f"Argilla: {err}") from err
    out = [feedback.feedback_row(r, found.get(r.prompt_id), n_answers) for r in rows]
    done = f"{progress['completed']} of {progress['total']} records completed"
    return out, f"read {len(found)} of {len(ids)} records from {argilla.target()} ({done})"


def _fetch(client: ArgillaClient, argilla: ArgillaResource, ids: list[str]) -> tuple[dict[str, dict], dict]:
    dataset_id = client.locate_dataset(argilla.dataset, argilla.workspace)
    if dataset_id is None:
        hint = "materialize argilla_records for this batch first"
        raise dg.Failure(description=f"Argilla: no dataset {argilla.target()}; {hint}")
    return client.records_by_external_id(dataset_id, ids), client.progress(dataset_id)


def build_review_sensor(settings: Settings, job_name: str, partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """Return the sensor that runs job ``job_name`` for each batch whose submitted responses changed.

    It runs by default only when an Argilla URL is configured (otherwise it is defined but STOPPED).
    Each tick reads the dataset's last response activity; when that moved, it reads the records with
    submitted responses and compares a fingerprint per batch (record metadata ``batch``) with the cursor,
    so new, edited and withdrawn responses all trigger a run of their batch.
    """
    running = dg.DefaultSensorStatus.RUNNING if settings.argilla.url else dg.DefaultSensorStatus.STOPPED
    about = "Runs human_feedback and preference_pairs for the batches whose Argilla responses changed."

    interval = settings.argilla.sensor_interval_s

    @dg.sensor(name=SENSOR_NAME, job_name=job_name, minimum_interval_seconds=interval, default_status=running,
               description=about)  # fmt: skip
    def argilla_responses(
        context: dg.SensorEvaluationContext, argilla: ArgillaResource
    ) -> dg.SensorResult | dg.SkipReason:
        if not argilla.url:
            return dg.SkipReason("no Argilla URL configured (argilla.url)")
        cursor = feedback.ReviewCursor.decode(context.cursor)
        with argilla.client() as client:
            dataset_id = client.locate_dataset(argilla.dataset, argilla.workspace)
            if dataset_id is None:
                return dg.SkipReason(f"no dataset {argilla.target()} yet")
            activity = client.last_activity(dataset_id)
            if activity == cursor.activity:
                return dg.SkipReason(f"no response created, changed or deleted since {activity}")
            fingerprints = feedback.batch_fingerprints(client.submitted_records(dataset_id))
        changed = feedback.changed_batches(cursor.batches, fingerprints)
        known = set(partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        for batch in sorted(set(changed) - known):
            context.log.warning(f"responses for batch {batch!r}, which is not a partition here; ignored")
        requests = [dg.RunRequest(partition_key=b, run_key=f"{b}@{activity}") for b in changed if b in known]
        return dg.SensorResult(
            run_requests=requests,
            cursor=feedback.ReviewCursor(activity, fingerprints).encode(),
            skip_reason=None if requests else "responses changed, but no submitted response of a batch here",
        )

    return argilla_responses
