"""The ``new_prompt_files`` sensor: new prompt files in a watched folder become batch partitions and runs."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from pref_assets.core.prompts import PromptSourceError
from pref_assets.core.watch import FolderCursor
from pref_assets.settings import Settings
from pref_assets.sources.folder import FolderScan, scan_folder
from pref_assets.sources.hub import latest_revision

SENSOR_NAME = "new_prompt_files"
AUTOMATION_SENSOR_NAME = "follow_upstream"
HUB_SENSOR_NAME = "new_hub_revision"
# The Hub revision a run reads its batch from (set by the hub sensor; the source's own revision otherwise).
HUB_REVISION_TAG = "pref_assets/hub_revision"


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Return the sensor that evaluates the assets' automation conditions (stopped by default).

    Turned on, a partition materialized on its own (``prompts`` of a new batch, say) pulls its downstream
    assets after it, never past a failed blocking check. Runs of ``preference_job`` (the folder sensor, the
    schedule, backfills) already cover every asset, so they give it nothing to do.
    """
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
        description="Materializes the downstream assets of a partition that was materialized on its own.",
    )


def build_folder_sensor(
    settings: Settings, job_name: str, partitions: dg.DynamicPartitionsDefinition
) -> dg.SensorDefinition:
    """Return the sensor that watches ``source.folder`` (running by default: the folder is what was asked for).

    Each tick reads the files that are new or changed since the cursor, adds partitions for batches a file did
    not have before, and requests a run of job ``job_name`` for every new or changed batch. A file that
    cannot be read is logged (file, row, problem) and read again once it changes; it never blocks the others.
    """
    source = settings.source
    folder = Path(source.folder)

    @dg.sensor(name=SENSOR_NAME, job_name=job_name, minimum_interval_seconds=source.poll_interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Turns new or changed prompt files in {folder} into batches and runs them.")  # fmt: skip
    def new_prompt_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            scan = scan_folder(folder, source.columns, settings.batch_size, cursor=FolderCursor.decode(context.cursor),
                               min_file_age_s=source.min_file_age_s, now=time.time())  # fmt: skip
        except PromptSourceError as err:
            return dg.SkipReason(str(err))
        _log(context, scan)
        return _result(scan, partitions)

    return new_prompt_files


def _log(context: dg.SensorEvaluationContext, scan: FolderScan) -> None:
    for problem in scan.problems:
        context.log.error(problem)
    for change in scan.changes:
        if change.stale_keys:
            context.log.warning(f"{change.file_name} has fewer batches than before; {', '.join(change.stale_keys)} "
                                "keep their earlier outputs")  # fmt: skip


def _result(scan: FolderScan, partitions: dg.DynamicPartitionsDefinition) -> dg.SensorResult:
    new_keys = [key for change in scan.changes for key in change.new_keys]
    runs = [dg.RunRequest(run_key=run.run_key, partition_key=run.partition_key)
            for change in scan.changes for run in change.runs]  # fmt: skip
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=scan.cursor.encode(),
        skip_reason=None if runs else _skip_reason(scan),
    )


def _skip_reason(scan: FolderScan) -> str:
    if scan.problems:
        return f"{len(scan.problems)} unreadable file(s), see the tick's logs; nothing new to run"
    return "no new or changed prompt file"


def build_hub_revision_sensor(
    settings: Settings, job_name: str, partitions: dg.PartitionsDefinition
) -> dg.SensorDefinition:
    """Return the sensor that reruns every batch when the Hub dataset gets a new revision (stopped by default).

    Its first tick notes the revision the dataset is at; every later revision requests a run per batch, tagged
    with the revision so that each batch reads exactly that one. Answers already paid for come from the
    request cache, so only new or changed prompts cost anything.
    """
    source = settings.source

    @dg.sensor(name=HUB_SENSOR_NAME, job_name=job_name, minimum_interval_seconds=source.hub_poll_interval_s,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Reruns every batch when {source.repo_id} gets a new revision on the Hub.")  # fmt: skip
    def new_hub_revision(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            revision = latest_revision(str(source.repo_id))
        except PromptSourceError as err:
            return dg.SkipReason(str(err))
        if context.cursor is None or context.cursor == revision:
            seen = "first look" if context.cursor is None else "unchanged"
            return dg.SensorResult(skip_reason=f"{source.repo_id} at {revision[:12]} ({seen})", cursor=revision)
        keys = partitions.get_partition_keys(dynamic_partitions_store=context.instance)
        runs = [dg.RunRequest(run_key=f"{key}@{revision}", partition_key=key, tags={HUB_REVISION_TAG: revision})
                for key in keys]  # fmt: skip
        return dg.SensorResult(run_requests=runs, cursor=revision)

    return new_hub_revision
