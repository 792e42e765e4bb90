"""One explicit retry policy: which failures to retry and how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass

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


def parse_retry_after(value: str | None) -> float | None:
    """Return Retry-After in seconds when it is a number (HTTP dates are ignored)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
