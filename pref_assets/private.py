"""Files the pipeline writes (stage Parquet, the request cache, the published copy) are private to the user:
folders it creates are 0700 and files 0600, unless ``private_files: false`` in the configuration."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_dirs(path: Path, *, private: bool) -> None:
    """Create ``path`` and its missing parents; those created are 0700 when ``private``. Existing folders
    keep their mode (the storage folder may be one the user shares on purpose)."""
    if path.is_dir():
        return
    if not private:
        path.mkdir(parents=True, exist_ok=True)
        return
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        restrict(folder, DIR_MODE)  # mkdir's mode is narrowed by the umask, never widened; this makes it exact


def restrict(path: Path, mode: int = FILE_MODE) -> None:
    """Set ``path``'s mode, when it exists and belongs to this user."""
    try:
        os.chmod(path, mode)
    except (FileNotFoundError, PermissionError):
        return


def open_sqlite(path: Path, *, private: bool) -> sqlite3.Connection:
    """Open (creating) the SQLite file ``path`` in autocommit and WAL mode; when ``private``, the file and its WAL
    and shared-memory files are 0600 and its new folders 0700."""
    make_dirs(path.parent, private=private)
    if private:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE))
        for made in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            restrict(made)
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db
