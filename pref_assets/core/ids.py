"""Deterministic identifiers."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pref_assets.core.batching import FILE_SEPARATOR, FileBatch, batch_key, parse_file_batch_key

_RECORD_NAMESPACE = uuid.UUID("6f1f3a52-5d0e-4f8e-9a51-2b7c1d7e4a10")


def prompt_id(instruction: str, messages: list[dict[str, str]] | None = None) -> str:
    """Return the SHA-256 hex digest of the instruction's UTF-8 bytes, or of the whole conversation ``messages``
    when it is more than that one user turn (a system prompt, earlier turns)."""
    if messages is None or messages == [{"role": "user", "content": instruction}]:
        return hashlib.sha256(instruction.encode("utf-8")).hexdigest()
    canonical = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def row_id(batch: str, position: int) -> str:
    """Return the key of the row at 0-based ``position`` in partition ``batch``: ``batch-00002#5``.

    Unlike a prompt id (a hash of the text, shared by a repeated prompt and by rows without text), it is unique
    across every stage of every batch, so stages join on it one to one.
    """
    return f"{batch}#{position}"


def source_row_ids(key: str, batch_size: int) -> Callable[[int], str]:
    """Return the function giving the ``row_id`` of the i-th row of the source partition ``key`` slices (the
    configured source, or for a watched-folder key its file): the batch that row falls in, and its position there."""
    if FILE_SEPARATOR in key:
        file_name = parse_file_batch_key(key).file_name
        return lambda i: row_id(FileBatch(file_name, i // batch_size).key, i % batch_size)
    return lambda i: row_id(batch_key(i // batch_size), i % batch_size)


def join_column(*row_sets: Iterable[Mapping[str, Any] | Any]) -> str:
    """Return the column that joins these stages' rows: ``row_id`` when every row has one, else ``prompt_id``
    (rows stored before row ids existed, where failed rows may share an id). Rows are dicts or typed rows."""
    return "row_id" if all(_row_id(row) for rows in row_sets for row in rows) else "prompt_id"


def record_uuid(dataset: str, prompt_id_: str) -> str:
    """Return a stable record UUID for one prompt in one dataset."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{dataset}\x00{prompt_id_}"))


def stable_hash(*parts: str) -> str:
    """Return a short hex digest of the joined parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return digest.hexdigest()[:16]


def _row_id(row: Mapping[str, Any] | Any) -> str | None:
    return row.get("row_id") if isinstance(row, Mapping) else row.row_id
