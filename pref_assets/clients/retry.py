"""One explicit retry policy: which failures to retry and how long to wait."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry 408/409/429/5xx and connection errors with capped exponential backoff and jitter.

    429 answers have their own, larger budget (``max_rate_limited``): they say "later", not "broken".
    """

    max_attempts: int = 4
    max_rate_limited: int = 30
    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 60.0

    def should_retry(self, status_code: int) -> bool:
        """Return whether an HTTP status is worth another attempt (never a plain 4xx)."""
        return status_code in RETRY_STATUSES or status_code >= 500

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Return the wait before attempt ``attempt + 1``; a server's Retry-After wins, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return how long the server asks to wait, in seconds, or None if it does not say.

    Reads ``retry-after-ms``, then ``Retry-After`` (seconds or an HTTP date), then the reset time of an exhausted
    ``x-ratelimit-remaining-*`` budget (``x-ratelimit-reset-requests: 1m30s``, as OpenAI sends it).
    """
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis, 0.0) / 1000
    seconds = parse_retry_after(headers.get("retry-after"), now=now)
    if seconds is not None:
        return seconds
    resets = [
        parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
        for kind in ("requests", "tokens")
        if _finite(headers.get(f"x-ratelimit-remaining-{kind}")) == 0
    ]
    return max((r for r in resets if r is not None), default=None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return a Retry-After value in seconds: a number, or the time until an HTTP date; None if unreadable."""
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """Return seconds from a number or a duration such as ``6ms``, ``1.5s``, ``1m30s``; None if unreadable."""
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    text = value.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _finite(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
