"""Prompt sources: the embedded set, local files, a watched folder, and Hugging Face Hub datasets."""

from __future__ import annotations

from pathlib import Path

from pref_assets.core.batching import batch_bounds, parse_file_batch_key
from pref_assets.core.prompts import PromptSourceError, RawRow
from pref_assets.settings import SourceSettings
from pref_assets.sources.embedded import read_embedded
from pref_assets.sources.files import read_files
from pref_assets.sources.folder import read_folder_file
from pref_assets.sources.hub import read_hub

__all__ = ["PromptSourceError", "RawRow", "read_batch", "read_source"]


def read_source(source: SourceSettings) -> list[RawRow]:
    """Return every row of the configured source, in a stable order."""
    if source.kind == "embedded":
        rows = read_embedded()
    elif source.kind == "files":
        rows = read_files([*source.paths], source.columns)
    else:
        rows = read_hub(source)
    return rows[: source.limit] if source.limit else rows


def read_batch(source: SourceSettings, key: str, batch_size: int) -> tuple[list[RawRow], tuple[int, int]]:
    """Return the rows that hold batch ``key`` and the [start, stop) range of them the batch covers.

    The rows are the whole source, or for a watched folder the file the key names.
    """
    if source.kind != "folder":
        return read_source(source), batch_bounds(key, batch_size)
    batch = parse_file_batch_key(key)
    return read_folder_file(Path(source.folder), batch.file_name, source.columns), batch.bounds(batch_size)
