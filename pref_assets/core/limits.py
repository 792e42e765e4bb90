"""Bounds on what is read from prompt files, checked before (or without) recursing into it.

A file is at most ``MAX_FILE_BYTES``; a row (a JSONL line, a JSON item, a CSV or Parquet row) at most
``MAX_ROW_CHARS`` characters of text; a JSON value at most ``MAX_DEPTH`` arrays or objects deep. Deeper or bigger
input is refused with a message, never a ``RecursionError`` or a stalled reader.

A benchmark (``decontaminate:``) is indexed whole, one entry per run of words, so it holds at most
``MAX_BENCHMARK_ROWS`` rows unless its ``limit`` says how many of its first rows to take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_ROW_CHARS = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_BENCHMARK_ROWS = 100_000

# A JSON string (escapes included), whose brackets are not structure, or a bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset("[{")


def json_too_deep_at(text: str, max_depth: int | None = None) -> int | None:
    """Return the offset in JSON ``text`` where nesting passes ``max_depth`` arrays or objects, or None.

    The text is scanned, not parsed, so any depth is cheap to refuse.
    """
    max_depth = MAX_DEPTH if max_depth is None else max_depth
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        depth = depth + 1 if token in _OPENERS else depth - 1
        if depth > max_depth:
            return match.start()
    return None


def too_deep() -> str:
    """Return the problem text of JSON nested past the bound."""
    return f"JSON nested deeper than {MAX_DEPTH} levels"


def value_problem(value: Any) -> str | None:
    """Return why a parsed value (lists, mappings, scalars) is too deep or holds too much text, or None.

    The value is walked with a stack, not recursion, so no depth can overflow the interpreter's.
    """
    max_depth, max_chars = MAX_DEPTH, MAX_ROW_CHARS
    stack: list[tuple[Any, int]] = [(value, 0)]
    chars = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (str, bytes)):
            chars += len(item)
        elif isinstance(item, (Mapping, list, tuple)):
            if depth >= max_depth:
                return f"value nested deeper than {max_depth} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
        if chars > max_chars:
            return f"row holds over {max_chars} characters of text, the limit"
    return None


def benchmark_rows_problem(name: str, where: str, rows: int) -> str | None:
    """Return why benchmark ``name``, ``rows`` rows long up to ``where``, is too big to index whole, or None."""
    if rows > MAX_BENCHMARK_ROWS:
        return (f"benchmark {name!r}: {rows} rows up to {where}, over the limit of {MAX_BENCHMARK_ROWS} for a "
                f"benchmark without a limit; set its limit: to index only its first rows")  # fmt: skip
    return None


def size_problem(chars: int, what: str) -> str | None:
    """Return why a ``what`` of ``chars`` characters is too big to read, or None."""
    if chars > MAX_ROW_CHARS:
        return f"{what} is {chars} characters, over the limit of {MAX_ROW_CHARS}; split the row or shorten its text"
    return None
