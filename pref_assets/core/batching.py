"""Fixed-size batches of a prompt source, named by partition keys.

A configured source gives keys ``batch-00000``, ``batch-00001``, ...; a watched folder gives one series per
file, ``<file name>/batch-00000``, so that a key names both the file and the batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_PREFIX = "batch-"
FILE_SEPARATOR = "/"
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def batch_keys(n_rows: int, batch_size: int) -> list[str]:
    """Return the partition keys covering ``n_rows`` rows in slices of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [batch_key(i) for i in range(max(1, math.ceil(n_rows / batch_size)))]


def batch_key(index: int) -> str:
    """Return the partition key of batch ``index``."""
    return f"{_PREFIX}{index:05d}"


def batch_bounds(key: str, batch_size: int) -> tuple[int, int]:
    """Return the [start, stop) row range a partition key covers."""
    index = _batch_index(key)
    if index is None:
        raise ValueError(f"not a batch partition key: {key!r} (expected e.g. {batch_key(0)!r})")
    return _bounds(index, batch_size)


def _batch_index(key: str) -> int | None:
    digits = key[len(_PREFIX) :]
    return int(digits) if key.startswith(_PREFIX) and digits.isdigit() else None


def _bounds(index: int, batch_size: int) -> tuple[int, int]:
    return index * batch_size, (index + 1) * batch_size


@dataclass(frozen=True, slots=True)
class FileBatch:
    """One batch of one file in a watched folder."""

    file_name: str
    index: int

    @property
    def key(self) -> str:
        """Return the partition key, ``<file name>/batch-00000``."""
        return f"{self.file_name}{FILE_SEPARATOR}{batch_key(self.index)}"

    def bounds(self, batch_size: int) -> tuple[int, int]:
        """Return the [start, stop) row range of the file this batch covers."""
        return _bounds(self.index, batch_size)


def parse_file_batch_key(key: str) -> FileBatch:
    """Return the file and batch a watched-folder partition key names."""
    file_name, _, batch = key.rpartition(FILE_SEPARATOR)
    index = _batch_index(batch)
    if file_name_problem(file_name) is not None or index is None:
        raise ValueError(f"not a watched-folder partition key: {key!r} (expected e.g. {FileBatch('a.jsonl', 0).key!r})")
    return FileBatch(file_name, index)


def file_name_problem(name: str) -> str | None:
    """Return why a file name cannot be part of a partition key, or None when it can.

    Names are letters, digits, ``.``, ``_`` and ``-``, not starting with ``.`` and without ``..``: such a key is
    a valid Dagster partition key, a safe relative path for the stored Parquet files, and needs no quoting in
    ``--partitions a,b`` lists.
    """
    if _FILE_NAME.fullmatch(name) and ".." not in name:
        return None
    return (
        f"file name {name!r} cannot name a partition: use only letters, digits, '.', '_' and '-' "
        "(not starting with '.', no '..')"
    )
