"""JSON values embedded in a model's text, found in one linear scan and bounded in depth and count.

A judge writes its JSON after prose, in fences, beside stray braces, or cut off. Trying a JSON decoder at every
bracket costs time quadratic in the text and recurses as deep as the text nests; here the brackets are matched
once, only spans no deeper than ``MAX_DEPTH`` are decoded, at most ``MAX_VALUES`` of them, and each character is
decoded a bounded number of times.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 20
MAX_VALUES = 64

_DECODER = json.JSONDecoder(strict=False)
_TO_CLOSER = str.maketrans("{[", "}]")
# A run of openers is one token; a closer is one token.
_OPENERS = re.compile(r"[\[{]+")
_BRACKETS = re.compile(r"[\[{]+|[\]}]")
# Inside brackets a JSON string is one token (its brackets are text); outside them a quote is prose. A string
# left open runs to the end of the text, so no quote is ever scanned twice.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[{]+|[\]}]', re.S)
# How the outermost bracket left open at the end must begin for the text to be a cut-off JSON value.
_JSON_START = re.compile(r'[{\[]\s*(?:"|\{|\[|\]|\}|$)')

# (start, end, depth): a balanced bracket span text[start:end], nested depth levels deep (1 for "{}")
_Span = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Found:
    """A decoded JSON value and where it stands in the text."""

    value: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Scan:
    """What a text holds: decoded values (outermost only, in text order); whether some JSON was too deep to
    decode, or too many values to decode each; whether the text ends inside an unbalanced JSON value."""

    found: tuple[Found, ...]
    too_deep: bool = False
    too_many: bool = False
    cut_off: bool = False


def scan_json(text: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Scan:
    """Return the JSON objects and arrays in ``text``.

    Brackets are matched skipping JSON strings (a bracket inside a rationale is text); when that leaves brackets
    unmatched, they are matched once more ignoring quotes (a stray quote in prose must not hide what follows). A
    balanced span that decodes is a value; one that does not is searched for values inside, at most
    ``max_depth`` levels down. Nothing deeper than ``max_depth`` is decoded; a text with more than
    ``max_values`` outermost spans has none decoded.
    """
    spans, open_at_end, deepest, clean = _balanced(text, _STRING_OR_BRACKET)
    cut_off = open_at_end is not None and _JSON_START.match(text, open_at_end) is not None
    passes = [spans] if clean else [spans, _balanced(text, _BRACKETS)[0]]
    if any(_count_outermost(p) > max_values for p in passes):
        return Scan((), too_deep=deepest > max_depth, too_many=True, cut_off=cut_off)
    found: dict[tuple[int, int], Found] = {}
    too_deep = deepest > max_depth
    for candidate_spans in passes:
        for item in _decode_outermost(text, candidate_spans, max_depth):
            if item is None:
                too_deep = True
            else:
                found.setdefault((item.start, item.end), item)
    values = sorted(found.values(), key=lambda f: (f.start, -f.end))
    return Scan(_outermost(values), too_deep=too_deep, cut_off=cut_off)


def _balanced(text: str, tokens: re.Pattern[str]) -> tuple[list[_Span], int | None, int, bool]:
    """Return the balanced bracket spans of ``text`` sorted by start; where the outermost bracket still open at the
    end starts (None if none is); the deepest nesting seen; and whether every bracket was matched. A closer that
    does not match abandons every open bracket. Strings are tokens only inside brackets."""
    spans: list[_Span] = []
    starts: list[int] = []
    closers: list[str] = []
    inner: list[int] = []
    deepest = 0
    clean = True
    at = 0
    search = tokens.search
    while True:
        match = search(text, at) if starts else _OPENERS.search(text, at)
        if match is None:
            break
        begin, at = match.span()
        char = text[begin]
        if char == "{" or char == "[":
            starts.extend(range(begin, at))
            closers.extend(text[begin:at].translate(_TO_CLOSER))
            inner.extend([0] * (at - begin))
            deepest = max(deepest, len(starts))
        elif char != '"':
            if starts and closers[-1] == char:
                closers.pop()
                depth = inner.pop() + 1
                spans.append((starts.pop(), at, depth))
                if inner and inner[-1] < depth:
                    inner[-1] = depth
            elif starts:
                starts.clear()
                closers.clear()
                inner.clear()
                clean = False
    spans.sort(key=lambda s: (s[0], -s[1]))
    return spans, starts[0] if starts else None, deepest, clean and not starts


def _count_outermost(spans: list[_Span]) -> int:
    count, reach = 0, -1
    for start, end, _ in spans:
        if start >= reach:
            count += 1
            reach = end
    return count


def _decode_outermost(text: str, spans: list[_Span], max_depth: int) -> Iterator[Found | None]:
    """Yield the decoded value of each outermost span, or, where one does not decode, of the spans inside it;
    None for a span too deep to decode."""
    pending = [(0, len(text), 0)]  # (first span index, region end, levels descended)
    while pending:
        index, region_end, levels = pending.pop()
        reach = -1
        while index < len(spans) and spans[index][0] < region_end:
            start, end, depth = spans[index]
            index += 1
            if start < reach:
                continue  # inside a span already handled
            reach = end
            if depth > max_depth:
                yield None
                continue
            try:
                value, length = _DECODER.raw_decode(text[start:end])
            except (ValueError, RecursionError):  # JSONDecodeError, or an integer of over 4,300 digits
                value, length = None, -1
            if length == end - start:
                yield Found(value, start, end)
            elif levels < max_depth:
                pending.append((index, end, levels + 1))


def _outermost(values: list[Found]) -> tuple[Found, ...]:
    out: list[Found] = []
    reach = -1
    for item in values:
        if item.start >= reach:
            out.append(item)
            reach = item.end
    return tuple(out)
