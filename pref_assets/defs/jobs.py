"""The named jobs runs are launched by, and the configuration identity every run and materialization carries.

``preference_job`` covers every asset of a batch, from ``prompts`` to ``preference_dataset``: the command line,
``./dev.sh run``, the watched-folder and Hub sensors, the schedule and backfills launch it, so each batch goes
as far as review and the published set. ``review_job`` is what the Argilla sensor launches when responses change:
``human_feedback``, ``preference_pairs`` and ``preference_dataset``, so the published set follows the review.
``argilla_push_job`` sends already-judged batches to Argilla (``pref-assets review push``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from pref_assets.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, Settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

JOB_NAME = "preference_job"
REVIEW_JOB_NAME = "review_job"
PUSH_JOB_NAME = "argilla_push_job"
REVIEW_ASSETS = ("human_feedback", "preference_pairs", "preference_dataset")
PUSH_ASSETS = ("argilla_records",)
# Run tags naming the configuration a run was made with (filter the Runs page by them).
TAG_PREFIX = "pref_assets/"
CONFIG_TAG = f"{TAG_PREFIX}config"
CONFIG_FILE_TAG = f"{TAG_PREFIX}config_file"
STORAGE_TAG = f"{TAG_PREFIX}storage"
_TAG_CHARS = 200
# The ``config_file`` of a run made with the embedded default configuration.
EMBEDDED_DEFAULT = "the embedded default"


def config_file() -> str | None:
    """Return the configuration file ``load_settings`` reads (absolute), or None for the embedded default."""
    chosen = os.environ.get(CONFIG_ENV) or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else None)
    return str(Path(chosen).resolve()) if chosen else None


def source_description(settings: Settings) -> str:
    """Return where the prompts come from as ``kind: where``: the shipped set, the files, the Hub dataset (split
    and revision) or the watched folder. The run tags and the dataset card both say it this way."""
    source = settings.source
    where = {
        "embedded": "the shipped prompt set",
        "files": ", ".join(source.paths),
        "hub": f"{source.repo_id} ({source.split}{'@' + source.revision if source.revision else ''})",
        "folder": str(source.folder),
    }[source.kind]
    return f"{source.kind}: {where}"


def config_identity(settings: Settings, file: str | None = None) -> dict[str, str]:
    """Return what tells this configuration's data apart: source, generators, judges and storage, and a short id
    hashed from them. Two configurations writing to the same ``storage_dir`` with other models get other ids."""
    identity = {
        "source": source_description(settings),
        "generators": ", ".join(f"{g.name}={g.model}" for g in settings.generators),
        "judge": ", ".join(f"{j.name}={j.model}" for j in settings.panel),
        "storage": str(Path(settings.storage_dir).resolve()),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return {"config": digest, **identity, "config_file": file or EMBEDDED_DEFAULT}


def config_tags(identity: dict[str, str]) -> dict[str, str]:
    """Return the identity as run tags (``pref_assets/<name>``), each value cut to a readable length."""
    return {f"{TAG_PREFIX}{name}": _cut(value) for name, value in identity.items()}


def _cut(value: str) -> str:
    return value if len(value) <= _TAG_CHARS else value[: _TAG_CHARS - 1] + "…"


def build_jobs(assets: Sequence[dg.AssetsDefinition], tags: dict[str, str]) -> list[UnresolvedAssetJobDefinition]:
    """Return ``preference_job`` (``assets``: the chain, review and publish), ``review_job`` and
    ``argilla_push_job``, all tagged with ``tags``."""
    every = dg.AssetSelection.assets(*assets)
    return [
        dg.define_asset_job(JOB_NAME, selection=every, tags=tags,
                            description="Every asset of the selected batches, from prompts to the published set."),
        dg.define_asset_job(REVIEW_JOB_NAME, selection=dg.AssetSelection.assets(*REVIEW_ASSETS), tags=tags,
                            description="Reads the review's labels, rebuilds the final pairs and republishes the set."),
        dg.define_asset_job(PUSH_JOB_NAME, selection=dg.AssetSelection.assets(*PUSH_ASSETS), tags=tags,
                            description="Sends judged batches to Argilla for review (idempotent: upserts by id)."),
    ]  # fmt: skip
