"""The Dagster code location: ``dagster dev -m pref_assets.definitions`` or ``-w workspace.yaml``."""

from __future__ import annotations

import gc

import dagster as dg

from pref_assets.defs.io_manager import ParquetIOManager
from pref_assets.defs.partitions import build_partitions
from pref_assets.defs.publish import build_hub_resource, build_publish_asset
from pref_assets.defs.resources import build_argilla_resource, build_llm_resource
from pref_assets.defs.review import build_review_assets, build_review_sensor
from pref_assets.defs.schedules import build_next_batches_schedule
from pref_assets.defs.sensors import build_automation_sensor, build_folder_sensor, build_hub_revision_sensor
from pref_assets.defs.stages import build_assets
from pref_assets.settings import Settings, load_settings

JOB_NAME = "preference_job"
REVIEW_JOB_NAME = "review_job"


def build_definitions(settings: Settings, executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """Return the project's definitions for ``settings``; steps run in one process unless ``executor`` says
    otherwise (``deploy/celery`` and ``deploy/k8s`` pass theirs)."""
    partitions = build_partitions(settings)
    assets = build_assets(settings, partitions)
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.assets(*assets))
    review = build_review_assets(settings, partitions)
    review_job = dg.define_asset_job(REVIEW_JOB_NAME, selection=dg.AssetSelection.assets(*review))
    return dg.Definitions(
        assets=[*assets, *review, build_publish_asset(settings, partitions)],
        jobs=[job, review_job],
        sensors=_sensors(settings, partitions),
        schedules=[
            build_next_batches_schedule(
                JOB_NAME,
                partitions,
                cron=settings.schedule.cron,
                batches_per_tick=settings.schedule.batches_per_tick,
            )
        ],
        resources={
            "llm": build_llm_resource(settings),
            "argilla": build_argilla_resource(settings.argilla),
            "parquet_io": ParquetIOManager(base_dir=settings.storage_dir, private_files=settings.private_files),
            "hub": build_hub_resource(settings),
        },
        executor=executor,
    )


def _sensors(settings: Settings, partitions: dg.PartitionsDefinition) -> list[dg.SensorDefinition]:
    sensors = [build_review_sensor(settings, REVIEW_JOB_NAME, partitions), build_automation_sensor()]
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        sensors.append(build_folder_sensor(settings, JOB_NAME, partitions))
    if settings.source.kind == "hub" and settings.source.revision is None:
        sensors.append(build_hub_revision_sensor(settings, JOB_NAME, partitions))
    return sensors


defs = build_definitions(load_settings())
# What is loaded by now (Dagster, polars, these definitions: a few hundred thousand objects) lives as long as the
# process. Keep it out of the cyclic collector's full passes, which would rescan all of it each time (about 0.1 s,
# stalling the request loop of an LLM step); reference counting still frees what it can.
gc.freeze()
