"""The watched-folder sensor's memory and decisions, free of I/O.

Per file the cursor keeps a version (size and modification time, so an unchanged file is not read again), a
revision that counts content changes, and a digest per batch. Comparing a file's new digests with the stored
ones gives the partitions to add (batches the file did not have) and the runs to request (new or changed
batches). A file that could not be read is remembered by version only, so it is reported once and read again
when it changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pref_assets.core.batching import FileBatch
from pref_assets.core.ids import stable_hash


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A file in the folder as seen on disk: its name and a version that changes when it is rewritten."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class FileState:
    """What the sensor knows of a file it has read: version, content revision, one digest per batch."""

    version: str
    revision: int
    batches: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FolderCursor:
    """Files read (``files``) and files that could not be read, by the version that failed (``failed``)."""

    files: Mapping[str, FileState] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)

    def has_seen(self, stamp: FileStamp) -> bool:
        """Return whether this version of the file was already read, or already failed."""
        known = self.files.get(stamp.name)
        return (known is not None and known.version == stamp.version) or self.failed.get(stamp.name) == stamp.version

    def encode(self) -> str:
        """Return the cursor as JSON text."""
        files = {name: {"version": s.version, "revision": s.revision, "batches": list(s.batches)}
                 for name, s in self.files.items()}  # fmt: skip
        return json.dumps({"files": files, "failed": dict(self.failed)}, sort_keys=True)

    @staticmethod
    def decode(text: str | None) -> FolderCursor:
        """Return the cursor stored as ``text`` (empty on the first tick)."""
        if not text:
            return FolderCursor()
        data = json.loads(text)
        files = {name: FileState(s["version"], s["revision"], tuple(s["batches"])) for name, s in data["files"].items()}
        return FolderCursor(files, dict(data["failed"]))


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run to request: the partition and a run key unique to this content of the batch."""

    partition_key: str
    run_key: str


@dataclass(frozen=True, slots=True)
class FileChange:
    """The outcome of reading one changed file."""

    file_name: str
    state: FileState
    new_keys: tuple[str, ...]
    runs: tuple[RunPlan, ...]
    stale_keys: tuple[str, ...]


def batch_digests(rows: Sequence[Mapping[str, Any]], batch_size: int) -> tuple[str, ...]:
    """Return one digest per batch of ``rows`` (each row's values, keys sorted)."""
    texts = [json.dumps(dict(row), sort_keys=True, default=str, ensure_ascii=False) for row in rows]
    return tuple(stable_hash(*texts[i : i + batch_size]) for i in range(0, len(texts), batch_size))


def plan_file(stamp: FileStamp, digests: tuple[str, ...], before: FileState | None) -> FileChange:
    """Return the new state of a file read at ``stamp``, its new partitions, and the runs to request."""
    old = before.batches if before else ()
    revision = (before.revision if before else 0) + (1 if digests != old else 0)
    state = FileState(stamp.version, revision, digests)
    changed = [i for i, digest in enumerate(digests) if i >= len(old) or old[i] != digest]
    runs = tuple(_run(stamp, i, revision, digests[i]) for i in changed)
    return FileChange(
        file_name=stamp.name,
        state=state,
        new_keys=tuple(FileBatch(stamp.name, i).key for i in range(len(old), len(digests))),
        runs=runs,
        stale_keys=tuple(FileBatch(stamp.name, i).key for i in range(len(digests), len(old))),
    )


def _run(stamp: FileStamp, index: int, revision: int, digest: str) -> RunPlan:
    # The file's version makes the key new when a removed file comes back with content it had before.
    key = FileBatch(stamp.name, index).key
    return RunPlan(key, f"{key}@r{revision}-{stable_hash(stamp.version)[:8]}-{digest}")
