"""Batch partitions: fixed-size slices of the configured prompt source, known when definitions load.

A watched folder (``source.kind: folder``) has dynamic partitions instead, added by the ``new_prompt_files``
sensor as files arrive.
"""

from __future__ import annotations

import logging

import dagster as dg

from pref_assets.core.batching import batch_keys
from pref_assets.core.prompts import PromptSourceError
from pref_assets.settings import Settings
from pref_assets.sources import read_source
from pref_assets.sources.batches import count_rows

log = logging.getLogger(__name__)


FOLDER_PARTITIONS = "prompt_file_batches"


def build_partitions(settings: Settings) -> dg.PartitionsDefinition:
    """Return one partition per batch of the source; a hub source counts ``source.limit`` rows.

    A ``files`` source is counted from its row indexes (``pref_assets.sources.index``): the first load reads
    each file once to build them, later loads read only their footers until a file changes.

    A source that cannot be read yet still gives one batch, so the project loads and the
    ``prompts`` asset reports the problem when it runs. A folder source gets the dynamic partitions
    ``FOLDER_PARTITIONS``.
    """
    if settings.source.kind == "folder":
        return dg.DynamicPartitionsDefinition(name=FOLDER_PARTITIONS)
    return dg.StaticPartitionsDefinition(batch_keys(_row_count(settings), settings.batch_size))


def _row_count(settings: Settings) -> int:
    source = settings.source
    if source.kind == "hub":
        return source.limit or settings.batch_size
    try:
        return count_rows(source, settings.storage_dir) if source.kind == "files" else len(read_source(source))
    except PromptSourceError as err:
        log.warning("prompt source not readable yet (%s); defining one batch", err)
        return settings.batch_size
