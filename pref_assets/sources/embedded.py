"""The prompt set shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pref_assets.core.prompts import RawRow
from pref_assets.sources.files import read_jsonl


def embedded_path() -> Path:
    """Return the path of the embedded prompts file."""
    return Path(str(resources.files("pref_assets") / "data" / "prompts.jsonl"))


def read_embedded() -> list[RawRow]:
    """Return the embedded prompts (instruction and topic columns)."""
    return read_jsonl(embedded_path())
