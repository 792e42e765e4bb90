"""Masking of configured secrets (API keys, tokens) in any text that is stored, shown or logged.

A server may echo the request's headers back, in an answer or in an error: verbatim, lower-cased, JSON-escaped,
or cut short. Every form of a configured secret is replaced by ``***`` before the text is cut to a length, so a
cut never leaves a prefix of the key behind. Values shorter than ``MIN_SECRET_CHARS`` are never masked: they
would destroy ordinary text and are not secrets worth the name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 8
# A prefix of a secret this long (a server cut it short) is masked as well; shorter prefixes are too common.
PARTIAL_CHARS = 16
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NAMESPACE_SALT = b"pref-assets request cache namespace\x00"


@dataclass(frozen=True, slots=True)
class Secrets:
    """The forms (lower-cased) under which configured secrets may appear in text."""

    forms: tuple[str, ...] = ()

    @classmethod
    def of(cls, *values: str | None) -> Secrets:
        """Return the masks of ``values``; empty and short values are left out."""
        forms: set[str] = set()
        for value in values:
            secret = (value or "").strip()
            if len(secret) >= MIN_SECRET_CHARS:
                escaped = json.dumps(secret)[1:-1]
                forms |= {_lower(secret), _lower(escaped), _lower(escaped.replace("/", "\\/"))}
        return cls(tuple(sorted(forms, key=len, reverse=True)))

    def __add__(self, other: Secrets) -> Secrets:
        return Secrets(tuple(sorted(set(self.forms) | set(other.forms), key=len, reverse=True)))

    def __bool__(self) -> bool:
        return bool(self.forms)

    def mask(self, text: str) -> str:
        """Return ``text`` with every occurrence of a secret (any letter case, or a long prefix of it) masked."""
        if not self.forms or not text:
            return text
        lowered = _lower(text)
        spans = sorted(span for form in self.forms for span in _occurrences(lowered, form))
        return _replace(text, spans) if spans else text

    def cut(self, text: str, limit: int) -> str:
        """Return the first ``limit`` characters of ``text`` once masked."""
        return self.mask(text)[:limit]

    def mask_values(self, value: Any) -> Any:
        """Return a JSON-like value with every string in it (keys too) masked."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list | tuple):
            return [self.mask_values(v) for v in value]
        if isinstance(value, dict):
            return {self.mask_values(k): self.mask_values(v) for k, v in value.items()}
        return value


def mask_secrets(text: str, *secrets: str | None) -> str:
    """Return ``text`` with ``secrets`` masked (see ``Secrets.mask``)."""
    return Secrets.of(*secrets).mask(text)


def secret_fingerprint(secret: str | None) -> str:
    """Return 16 hex digits that tell secrets apart without revealing them; "" when there is none."""
    value = (secret or "").strip()
    return hashlib.sha256(_NAMESPACE_SALT + value.encode("utf-8")).hexdigest()[:16] if value else ""


def _lower(text: str) -> str:
    """Lower-case ASCII letters only, so that positions in the result are positions in ``text``."""
    return text.translate(_ASCII_LOWER)


def _occurrences(lowered: str, form: str) -> list[tuple[int, int]]:
    """Return the spans of ``form`` in ``lowered``, and of prefixes of it at least PARTIAL_CHARS long."""
    head = form[: min(len(form), PARTIAL_CHARS)]
    spans = []
    start = lowered.find(head)
    while start != -1:
        end = start + len(head)
        while end < len(lowered) and end - start < len(form) and lowered[end] == form[end - start]:
            end += 1
        spans.append((start, end))
        start = lowered.find(head, end)
    return spans


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    """Return ``text`` with the (sorted, possibly overlapping) spans replaced by one mask each run."""
    parts, position = [], -1
    for start, end in spans:
        if start > position:  # touching spans (a key repeated) get one mask
            parts += [text[max(position, 0) : start], MASK]
        position = max(position, end)
    parts.append(text[position:])
    return "".join(parts)
