"""One explicit retry policy, and the one page on which layer retries what.

Each failure is retried by exactly one layer, the lowest that can tell what went wrong; the layers above see
only what that layer gave up on, and none of them retries it again.

1. Transport (``KeepAliveTransport``): a reused keep-alive connection the server had closed before any byte of
   the answer arrived is replaced by a fresh one, once, at once, uncounted. This is the keep-alive race, not a
   failure of the endpoint; the client never sees it (should a server read the request and then die, that
   request goes out twice; a completion can be asked again). A fresh connection that fails is not retried here.
2. Request (``ChatClient`` with ``RetryPolicy``): connection errors, timeouts, 408/409/5xx and 200 answers that
   are not a completion (not JSON, no choices, an error body whose code allows it), ``max_attempts`` in all
   with capped exponential backoff and jitter; 429 on its own budget (``max_rate_limited``), waiting what the
   server asks (``retry_after_seconds``) up to ``retry_after_cap``. Never another 4xx, an answer over
   ``max_response_bytes``, or a request the budget or the breaker refused. A 400/422 naming an optional field
   (``response_format``, ``seed``) is not retried either: the request is sent again without that field (at
   most once per field), and later requests leave it out. What still fails after the last attempt is a row
   with its reason, not an exception.
3. Endpoint (``Limiter``): retries nothing. It paces, halves its window on 429, pauses every request for
   ``Retry-After``, and after sustained failure parks the endpoint (one health probe decides for failures that
   reached the server), so the request layer stops retrying and the step fails fast naming the endpoint.
4. Judge (``core.rating.judge_all``): re-asks an answer that arrived but could not be read (unparseable, or cut
   off: then with more room), ``max_reasks`` times with a new seed. A call that failed is not re-asked: its
   retries were the request layer's.
5. Argilla (``ArgillaClient``): connection errors, timeouts, 408/429/5xx with the same ``RetryPolicy``; not 409
   (the dataset, workspace or field exists) nor other 4xx. A 422 on a bulk upsert is not retried: the chunk is
   sent again in halves until each refused record stands alone, and its 422 is its row's reason. The Argilla
   assets have no step retry; the review sensor just polls again at its next tick.
6. Step (Dagster ``RetryPolicy`` on the LLM assets): an exception raised in the asset body that no layer below
   handled (a crash, a storage error), twice with backoff; completed calls come from the request cache, so a
   retried step re-sends only what never completed. Not a parked endpoint or a configuration error (raised with
   ``allow_retries=False``), and not a failed ledger check (too many failed rows): Dagster does not retry a
   failed blocking check, so rows that failed after the request layer's attempts are not sent again. A rerun of
   the partition is the user's decision.
"""

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
