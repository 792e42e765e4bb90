"""A watched folder of prompt files: which files are ready, and what changed since the sensor last looked.

A file is considered once it is complete: its name does not start with ``.``, it ends in a supported suffix
(so ``*.tmp`` and ``*.part`` are never read) and it has not been modified for ``min_file_age_s`` seconds.
Write a file under a temporary name, then rename it into the folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pref_assets.core.batching import file_name_problem
from pref_assets.core.prompts import PromptSourceError, RawRow
from pref_assets.core.watch import FileChange, FileStamp, FolderCursor, batch_digests, plan_file
from pref_assets.sources.files import FORMATS, read_checked_file


@dataclass(frozen=True, slots=True)
class FolderScan:
    """One look at the folder: the new cursor, the files whose content changed, and files that failed."""

    cursor: FolderCursor
    changes: tuple[FileChange, ...]
    problems: tuple[str, ...]


def read_folder_file(folder: Path, name: str, mapping: Mapping[str, str]) -> list[RawRow]:
    """Return the rows of file ``name`` in ``folder``; raise if its name cannot be a partition or it is unreadable."""
    problem = file_name_problem(name)
    if problem:
        raise PromptSourceError(f"{folder / name}: {problem}")
    return read_checked_file(folder / name, mapping)


def scan_folder(folder: Path, mapping: Mapping[str, str], batch_size: int, *, cursor: FolderCursor,
                min_file_age_s: float, now: float) -> FolderScan:  # fmt: skip
    """Read the ready files that changed since ``cursor`` and return what to add, run and report.

    Files that disappeared leave the cursor; a file that is still being written keeps its last state.
    """
    if not folder.is_dir():
        raise PromptSourceError(f"{folder}: no such folder (source.folder)")
    paths = [p for p in folder.iterdir() if _is_prompt_file(p)]
    present = {p.name for p in paths}
    files = {name: state for name, state in cursor.files.items() if name in present}
    failed = {name: version for name, version in cursor.failed.items() if name in present}
    changes, problems = [], []
    for stamp in _ready(paths, min_file_age_s, now):
        if cursor.has_seen(stamp):
            continue
        try:
            rows = read_folder_file(folder, stamp.name, mapping)
        except PromptSourceError as err:
            failed[stamp.name] = stamp.version
            problems.append(f"{err}; skipped until the file changes")
            continue
        failed.pop(stamp.name, None)
        change = plan_file(stamp, batch_digests([r.values for r in rows], batch_size), files.get(stamp.name))
        files[stamp.name] = change.state
        changes.append(change)
    return FolderScan(FolderCursor(files, failed), tuple(changes), tuple(problems))


def _is_prompt_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in FORMATS and path.is_file()


def _ready(paths: list[Path], min_file_age_s: float, now: float) -> list[FileStamp]:
    stamps = []
    for path in sorted(paths):
        try:
            info = path.stat()
        except FileNotFoundError:  # removed since the folder was listed
            continue
        if now - info.st_mtime >= min_file_age_s:
            stamps.append(FileStamp(path.name, f"{info.st_size}:{info.st_mtime_ns}"))
    return stamps
