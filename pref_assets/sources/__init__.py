"""Prompt sources: the embedded set, local files, and Hugging Face Hub datasets."""

from __future__ import annotations

from pref_assets.core.prompts import PromptSourceError, RawRow
from pref_assets.settings import SourceSettings
from pref_assets.sources.embedded import read_embedded
from pref_assets.sources.files import read_files
from pref_assets.sources.hub import read_hub

__all__ = ["PromptSourceError", "RawRow", "read_source"]


def read_source(source: SourceSettings) -> list[RawRow]:
    """Return every row of the configured source, in a stable order."""
    if source.kind == "embedded":
        rows = read_embedded()
    elif source.kind == "files":
        rows = read_files([*source.paths], source.columns)
    else:
        rows = read_hub(source)
    return rows[: source.limit] if source.limit else rows
