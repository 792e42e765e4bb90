"""Duplicate keys of many source rows at once, as ``pref_assets.core.prompts.duplicate_key`` gives them one by one.

Rows holding only an instruction (no system prompt, no chat messages) are keyed column-wise: ASCII text is
normalized by polars (for ASCII, NFKC and zero-width removal change nothing and case folding is lower-casing),
other text by ``duplicate_form`` itself. Any other row goes through ``duplicate_key``. A key is the 32-byte
SHA-256 digest whose hex form ``duplicate_key`` returns; a row that would fail normalization has none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from pref_assets.core.prompts import duplicate_form, duplicate_key

# The C0 control characters core.prompts refuses, and the whitespace str.split() splits ASCII text at.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_ASCII_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]+"
_ASCII = r"^[\x00-\x7f]*$"


def duplicate_keys(
    columns: Mapping[str, Sequence[Any]], n_rows: int, mapping: Mapping[str, str], *, max_chars: int
) -> list[bytes | None]:
    """Return the duplicate key of each of ``n_rows`` rows given column by column (a missing column is all null)."""
    names = {field: mapping.get(field, field) for field in ("instruction", "system_prompt", "messages")}
    instructions = columns.get(names["instruction"])
    instructions = [None] * n_rows if instructions is None else list(instructions)
    if _plain(instructions, columns.get(names["system_prompt"]), columns.get(names["messages"])):
        return _instruction_keys(instructions, max_chars)
    wanted = {name for name in names.values() if name in columns}
    keys = []
    for index in range(n_rows):
        key = duplicate_key({name: columns[name][index] for name in wanted}, mapping, max_chars=max_chars)
        keys.append(None if key is None else bytes.fromhex(key))
    return keys


def _plain(instructions: list[Any], system: Sequence[Any] | None, messages: Sequence[Any] | None) -> bool:
    return (
        all(v is None or isinstance(v, str) for v in instructions)
        and (system is None or all(v is None for v in system))
        and (messages is None or all(v is None for v in messages))
    )


def _instruction_keys(instructions: list[str | None], max_chars: int) -> list[bytes | None]:
    text = pl.Series("s", instructions, dtype=pl.String)
    flags = pl.DataFrame({"s": text}).select(
        ascii=pl.col("s").str.contains(_ASCII),
        refused=(pl.col("s").str.len_chars() > max_chars) | pl.col("s").str.contains(_CONTROL),
        form=pl.col("s").str.to_lowercase().str.replace_all(_ASCII_SPACE, " ").str.strip_chars(" "),
    )
    keys: list[bytes | None] = []
    for value, ascii_, refused, form in zip(instructions, *(c.to_list() for c in flags.get_columns()), strict=True):
        if value is None or refused or not (form if ascii_ else value.strip()):  # empty or whitespace only
            keys.append(None)
            continue
        keys.append(hashlib.sha256((form if ascii_ else duplicate_form(value)).encode("utf-8")).digest())
    return keys
