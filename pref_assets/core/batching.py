"""Fixed-size batches of a prompt source, named by partition keys."""

from __future__ import annotations

import math

_PREFIX = "batch-"


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
    if not key.startswith(_PREFIX) or not key[len(_PREFIX) :].isdigit():
        raise ValueError(f"not a batch partition key: {key!r} (expected e.g. {batch_key(0)!r})")
    index = int(key[len(_PREFIX) :])
    return index * batch_size, (index + 1) * batch_size
