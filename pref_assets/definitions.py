"""The Dagster code location: ``dg dev``, ``dagster dev -m pref_assets.definitions`` or ``-w workspace.yaml``.

The assets, checks, sensors and jobs are built from the configuration by the builders in ``pref_assets.defs``;
module-level definitions in a file under ``pref_assets/defs/`` (dg's defs folder, e.g. one made by
``dg scaffold defs``) are loaded beside them. Every asset gets its kinds and the configured owners here.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from pref_assets.defs.batches import batch_sensors
from pref_assets.defs.calibration import build_calibration_asset
from pref_assets.defs.io_manager import ParquetIOManager
from pref_assets.defs.jobs import JOB_NAME, REVIEW_JOB_NAME, build_jobs, config_file, config_identity, config_tags
from pref_assets.defs.partitions import build_partitions
from pref_assets.defs.publish import build_hub_resource, build_publish_asset
from pref_assets.defs.resources import build_argilla_resource, build_llm_resource
from pref_assets.defs.review import build_review_assets, build_review_sensor
from pref_assets.defs.schedules import build_next_batches_schedule
from pref_assets.defs.sensors import build_automation_sensor, build_folder_sensor, build_hub_revision_sensor
from pref_assets.defs.stages import build_assets
from pref_assets.settings import Settings, load_settings

__all__ = ["JOB_NAME", "REVIEW_JOB_NAME", "build_definitions", "defs"]
# Kinds shown on each asset (icons in the UI, `dg list defs`): what holds its rows and what it talks to.
KINDS = {
    "prompts": {"polars"},
    "generations_by_model": {"polars", "openai-compatible"},
    "grouped": {"polars"},
    "ratings": {"polars", "openai-compatible"},
    "dpo_pairs": {"polars"},
    "argilla_records": {"polars", "argilla"},
    "human_feedback": {"polars", "argilla"},
    "preference_pairs": {"polars"},
    "preference_dataset": {"polars", "huggingface"},
    "judge_calibration": {"polars", "openai-compatible"},
}
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_definitions(settings: Settings, executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """Return the project's definitions for ``settings``; steps run in one process unless ``executor`` says
    otherwise (``deploy/celery`` and ``deploy/k8s`` pass theirs)."""
    partitions = build_partitions(settings)
    identity = config_identity(settings, config_file())
    chain = [*build_assets(settings, partitions), *build_review_assets(settings, partitions),
             build_publish_asset(settings, partitions)]  # fmt: skip
    assets = described(chain, settings, identity)
    calibration = described([build_calibration_asset(settings)], settings, identity)  # not in the batch jobs
    return dg.Definitions(
        assets=[*assets, *calibration],
        jobs=build_jobs(assets, config_tags(identity)),
        sensors=[*_sensors(settings, partitions), *batch_sensors(settings, JOB_NAME, assets)],
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
            "parquet_io": ParquetIOManager(
                base_dir=settings.storage_dir, private_files=settings.private_files, identity=identity
            ),
            "hub": build_hub_resource(settings),
        },
        executor=executor,
    )


def described(
    assets: Iterable[dg.AssetsDefinition], settings: Settings, identity: dict[str, str]
) -> list[dg.AssetsDefinition]:
    """Return ``assets`` with their kinds (``KINDS``; a hub source adds ``huggingface`` to ``prompts``), the
    configured owners and the configuration's identity in their definition metadata."""

    def describe(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        kinds = set(spec.kinds) | KINDS.get(name, set())
        if name == "prompts" and settings.source.kind == "hub":
            kinds.add("huggingface")
        return spec.replace_attributes(kinds=kinds, owners=list(settings.owners)).merge_attributes(
            metadata={"pref_assets/configuration": dg.MetadataValue.json(identity)}
        )

    return [asset.map_asset_specs(describe) for asset in assets]


# What dg's defs folder loader collects from a module's top level.
_DEFINITION_TYPES = (dg.AssetsDefinition, dg.AssetSpec, dg.SensorDefinition, dg.ScheduleDefinition, dg.JobDefinition,
                     UnresolvedAssetJobDefinition, dg.Definitions)  # fmt: skip


def has_module_level_definitions(package: ModuleType) -> bool:
    """Return whether a module under ``package`` defines Dagster definitions at its top level, or a folder holds a
    component (``defs.yaml``): what dg's loader would add to the builders' definitions."""
    folder = Path(str(package.__file__)).parent
    if next(folder.rglob("defs.yaml"), None) is not None:
        return True
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if any(isinstance(value, _DEFINITION_TYPES) for value in vars(importlib.import_module(info.name)).values()):
            return True
    return False


def _autoloaded() -> dg.Definitions:
    """Return the module-level definitions under ``pref_assets/defs/`` when run from a dg project checkout. The
    loader is only called when there are some: it costs about half a second in every Dagster process."""
    import pref_assets.defs

    if not (PROJECT_ROOT / "pyproject.toml").is_file() or not has_module_level_definitions(pref_assets.defs):
        return dg.Definitions()
    return dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)


def _sensors(settings: Settings, partitions: dg.PartitionsDefinition) -> list[dg.SensorDefinition]:
    sensors = [build_review_sensor(settings, REVIEW_JOB_NAME, partitions), build_automation_sensor()]
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        sensors.append(build_folder_sensor(settings, JOB_NAME, partitions))
    if settings.source.kind == "hub" and settings.source.revision is None:
        sensors.append(build_hub_revision_sensor(settings, JOB_NAME, partitions))
    return sensors


defs = dg.Definitions.merge(build_definitions(load_settings()), _autoloaded())
# What is loaded by now (Dagster, polars, these definitions: a few hundred thousand objects) lives as long as the
# process. Keep it out of the cyclic collector's full passes, which would rescan all of it each time (about 0.1 s,
# stalling the request loop of an LLM step); reference counting still frees what it can.
gc.freeze()
