"""The labelled pairs ``judge_calibration`` measures judges on: a user's file (``calibration.path``: JSONL, JSON,
Parquet or CSV with ``prompt``, ``better``, ``worse`` and optional ``flaw``, ``topic``, ``id``) or the set shipped in
the package (``pref_assets/data/calibration_pairs.jsonl``). Files are read with the prompt files' bounds."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pref_assets.core.calibration import CalibrationPair, parse_pairs
from pref_assets.sources import files


def shipped_pairs_path() -> Path:
    """Return the path of the shipped reference set."""
    return Path(str(resources.files("pref_assets") / "data" / "calibration_pairs.jsonl"))


def read_calibration_pairs(
    path: str | Path | None, limit: int | None = None
) -> tuple[list[CalibrationPair], list[str]]:
    """Return the pairs of ``path`` (the shipped set when None), at most ``limit`` of them, and a problem per row
    left out; raise PromptSourceError when the file cannot be read at all."""
    rows = files.read_file(Path(path) if path else shipped_pairs_path())
    pairs, problems = parse_pairs((row.source_ref, row.values) for row in rows)
    return (pairs[:limit] if limit else pairs), problems
