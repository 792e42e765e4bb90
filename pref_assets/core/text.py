"""Text hygiene for strings that arrive from outside (JSON escapes can carry what UTF-8 cannot encode)."""

from __future__ import annotations

import re
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
