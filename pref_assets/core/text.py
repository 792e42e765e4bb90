"""Text hygiene for strings that arrive from outside (JSON escapes can carry what UTF-8 cannot encode)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """Return ``text`` with lone UTF-16 surrogates (e.g. ``"\\ud83d"``, half an emoji) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def encodable_values(value: Any) -> Any:
    """Return a decoded JSON value with every string (keys too) made encodable."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, list):
        return [encodable_values(v) for v in value]
    if isinstance(value, dict):
        return {encodable_values(k): encodable_values(v) for k, v in value.items()}
    return value


# What a column name looks like: a short identifier, words allowed. A header row that is not made of such names
# (a credentials file under a prompt file's name, a data row taken for a header) is never repeated in messages.
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,39}")
_RANDOM_RUN = re.compile(r"[A-Za-z0-9]{16,}")
MAX_COLUMNS_SHOWN = 30


def describe_columns(names: Iterable[str]) -> str:
    """Return the column names found, for a message: listed when they look like column names (at most
    MAX_COLUMNS_SHOWN short identifiers), otherwise a statement that they do not, without any of their text."""
    found = sorted(set(names))
    if not found:
        return "no columns found"
    if len(found) > MAX_COLUMNS_SHOWN or not all(_looks_like_column(name) for name in found):
        return "the header row does not look like column names, so they are not shown"
    return f"columns present: {found}"


def _looks_like_column(name: object) -> bool:
    if not isinstance(name, str) or not _COLUMN_NAME.fullmatch(name):
        return False
    # a long run mixing letters and digits is a token or a key, not a name
    return not any(any(c.isdigit() for c in run) and any(c.isalpha() for c in run) for run in _RANDOM_RUN.findall(name))
