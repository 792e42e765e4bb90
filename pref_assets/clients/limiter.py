"""One limiter per endpoint, shared by every client of that endpoint in the process.

It paces requests to a requests-per-minute and a tokens-per-minute budget (configured, or learned from
``x-ratelimit-*`` headers), pauses everyone when a server says ``Retry-After``, adapts concurrency
AIMD-style (halve on 429, grow by about one per window of successes), and opens a circuit breaker
after sustained failure so that callers fail fast instead of spinning.

The breaker tells an unreachable endpoint from requests that fail on their own. Attempts that cannot reach
the server (connection refused or timed out, unknown host) count one by one: ``breaker_threshold`` in a row
park the endpoint. Failures that reached the server (5xx, read timeouts, unreadable answers) count once per
request, and only for requests first sent after the last success: a request that always fails is a problem of
that request, not of the endpoint. When ``breaker_threshold`` different requests failed that way, a health
probe (a minimal request, supplied by the client) decides: an answer counts as a success, a failure parks.

With ``shared`` limits (``pref_assets.clients.shared_limits``) the configured concurrency and budgets hold for the
sum of every process using the same store: after its own window, pause and budgets allow a request, the limiter
takes a lease and the request's budget from the store, one request of the process at a time; the lease is given
back when the attempt ends, and a ``Retry-After`` pause and the token count of an answer are sent to the store too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pref_assets.clients.shared_limits import Budget, SharedLimits, StoreSpec, open_store

Clock = Callable[[], float]
Probe = Callable[[], Awaitable[str | None]]
"""A health check of an endpoint: None when it answered, else what went wrong (naming the endpoint)."""


class CircuitOpenError(RuntimeError):
    """The endpoint could not be reached, or failed for many requests and a health probe; it is parked."""


@dataclass
class TokenBucket:
    """``rate`` units per second, holding at most ``capacity``; a None rate means no limit."""

    rate: float | None
    capacity: float
    level: float = 0.0
    stamp: float = 0.0

    def wait_time(self, amount: float, now: float) -> float:
        """Return how long to wait before ``amount`` can be taken (0 when it can be now)."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        return (
            0.0 if self.level >= min(amount, self.capacity) else (min(amount, self.capacity) - self.level) / self.rate
        )

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` (the level may go below zero when a request costs more than estimated)."""
        if self.rate is not None:
            self._refill(now)
            self.level -= amount

    def set_rate(self, per_minute: float, now: float) -> None:
        """Change the budget to a limit learned from a server: ``per_minute``, with a small burst
        (a quarter second's worth), since the server's own burst allowance is unknown."""
        self._refill(now)
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate / 4)
        self.level = min(self.level, self.capacity)

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now


def bucket(per_minute: float | None, now: float) -> TokenBucket:
    """Return a full bucket for a per-minute budget (None: unlimited)."""
    if per_minute is None:
        return TokenBucket(None, 0.0, 0.0, now)
    rate = per_minute / 60.0
    return TokenBucket(rate, max(1.0, rate), max(1.0, rate), now)


@dataclass
class Limiter:
    """The shared state of one endpoint; ``slot()`` waits for a turn and reports how the attempt went."""

    max_concurrency: int
    rpm: float | None = None
    tpm: float | None = None
    breaker_threshold: int = 25
    breaker_cooldown: float = 30.0
    clock: Clock = time.monotonic
    shared: SharedLimits | None = None
    window: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    paused_until: float = field(default=0.0, init=False)
    failures_in_row: int = field(default=0, init=False)
    failed_requests: set[Hashable] = field(default_factory=set, init=False)
    successes: int = field(default=0, init=False)
    probes: int = field(default=0, init=False)
    open_until: float = field(default=0.0, init=False)
    park_reason: str = field(default="", init=False)
    last_cut: float = field(default=-1e9, init=False)
    rate_limited: int = field(default=0, init=False)
    last_error: str = field(default="", init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque, init=False, repr=False)
    _probing: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _gate: asyncio.Lock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self.window = float(self.max_concurrency)
        self.requests = bucket(self.rpm, now)
        self.tokens = bucket(self.tpm, now)

    @asynccontextmanager
    async def slot(self, estimated_tokens: int) -> AsyncIterator[None]:
        """Wait for a place in the window (first come, first served), then for the pause, the budgets and
        the breaker to allow the request."""
        await self._acquire()
        lease: str | None = None
        try:
            if self.shared is None:
                await self._pace(estimated_tokens)
            else:
                async with self._shared_gate():  # one request of the process at a time asks the store
                    lease = await self._pace(estimated_tokens)
            yield
        finally:
            self._release()
            if lease is not None and self.shared is not None:
                self.shared.release(lease)

    async def _acquire(self) -> None:
        waiters = self._waiting()
        if not waiters and self.in_flight < self._width():
            self.in_flight += 1
            return
        turn = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        self.in_flight -= 1
        self._grant()

    def _grant(self) -> None:
        """Hand free places in the window to waiters, in order; a granted waiter already holds its place."""
        waiters = self._waiters
        while waiters and self.in_flight < self._width():
            turn = waiters.popleft()
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

    def _width(self) -> int:
        return max(1, int(self.window))

    def _waiting(self) -> deque[asyncio.Future[None]]:
        """Return the queue of waiters of the running event loop (a new loop starts an empty queue)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._waiters, self._gate = loop, deque(), None
        return self._waiters

    def _shared_gate(self) -> asyncio.Lock:
        """Return the lock of the running event loop that lets one request at a time ask the shared store."""
        self._waiting()
        if self._gate is None:
            self._gate = asyncio.Lock()
        return self._gate

    async def _pace(self, estimated_tokens: int) -> str | None:
        """Wait until the request may go; return its shared lease (None without shared limits)."""
        while True:
            probing = self._running_probe()
            if probing is not None:  # hold new attempts until the endpoint has answered the probe
                await asyncio.wait({probing})
                continue
            now = self.clock()
            if now < self.open_until:
                raise CircuitOpenError(self.park_reason)
            wait = max(
                self.paused_until - now,
                self.requests.wait_time(1, now),
                self.tokens.wait_time(estimated_tokens, now),
            )
            lease = None
            if wait <= 0 and self.shared is not None:
                lease, wait = await self.shared.acquire(estimated_tokens)
            if wait <= 0:
                self.requests.take(1, now)
                self.tokens.take(estimated_tokens, now)
                return lease
            await asyncio.sleep(min(wait, 1.0))

    def record_success(self, used_tokens: int, estimated_tokens: int, headers: Mapping[str, str]) -> None:
        """Grow the window, close the breaker, settle the token estimate, learn header limits."""
        self._reset()
        self.window = min(float(self.max_concurrency), self.window + 1.0 / max(self.window, 1.0))
        self.tokens.take(used_tokens - estimated_tokens, self.clock())
        if self.shared is not None:
            self.shared.charge(used_tokens - estimated_tokens)
        self._learn(headers)
        self._grant()

    def record_rate_limited(self, retry_after: float | None, headers: Mapping[str, str]) -> None:
        """Halve the window (at most once a second) and pause everyone for ``Retry-After``."""
        now = self.clock()
        self.rate_limited += 1
        if now - self.last_cut >= 1.0:
            self.window = max(1.0, self.window / 2)
            self.last_cut = now
        if retry_after is not None:
            self.paused_until = max(self.paused_until, now + retry_after)
            if self.shared is not None:
                self.shared.pause(retry_after)
        self._learn(headers)

    def record_unreachable(self, error: str) -> None:
        """Count an attempt that could not reach the server; park after ``breaker_threshold`` in a row."""
        self.failures_in_row += 1
        self.last_error = error
        if self.failures_in_row >= self.breaker_threshold:
            self._park(f"endpoint parked after {self.failures_in_row} failed attempts in a row; last: {error}")

    def record_failure(self, error: str, *, request: Hashable, since: int, probe: Probe | None = None) -> None:
        """Count a failed attempt that reached the server: once per ``request``, and only when no success came
        since its first attempt (``since`` is ``successes`` at that moment). At ``breaker_threshold`` such
        requests ``probe`` runs (one at a time; new attempts wait for it); without a probe the endpoint parks."""
        self.last_error = error
        if since != self.successes or self._running_probe() is not None:
            return
        self.failed_requests.add(request)
        failed = len(self.failed_requests)
        if failed < self.breaker_threshold:
            return
        if probe is None:
            self._park(f"endpoint parked after {failed} different requests failed in a row; last: {error}")
        else:
            self._probing = asyncio.get_running_loop().create_task(self._probe(probe, failed))

    async def _probe(self, probe: Probe, failed: int) -> None:
        self.probes += 1
        problem = await probe()
        if problem is None:
            self._reset()
        else:
            self._park(
                f"endpoint parked after {failed} different requests failed in a row and {problem}; "
                f"last: {self.last_error}"
            )

    def _running_probe(self) -> asyncio.Task[None] | None:
        """Return the probe in progress on the running event loop, if any."""
        task = self._probing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    def _reset(self) -> None:
        """The endpoint answered: clear both failure counts."""
        self.successes += 1
        self.failures_in_row = 0
        self.failed_requests.clear()

    def _park(self, reason: str) -> None:
        self.park_reason = reason
        self.open_until = self.clock() + self.breaker_cooldown

    def _learn(self, headers: Mapping[str, str]) -> None:
        now = self.clock()
        if self.rpm is None:
            _adopt(self.requests, _number(headers.get("x-ratelimit-limit-requests")), now)
        if self.tpm is None:
            _adopt(self.tokens, _number(headers.get("x-ratelimit-limit-tokens")), now)


def _adopt(budget: TokenBucket, per_minute: float | None, now: float) -> None:
    """Pace ``budget`` to a limit a server announced, unless it already is."""
    if per_minute and (budget.rate is None or abs(budget.rate * 60 - per_minute) > 1e-6):
        budget.set_rate(per_minute, now)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


_SHARED: dict[tuple[str, int, float | None, float | None, StoreSpec | None], Limiter] = {}


def shared_limiter(
    endpoint_id: str,
    *,
    max_concurrency: int,
    rpm: float | None,
    tpm: float | None,
    store: StoreSpec | None = None,
    scope: str = "",
) -> Limiter:
    """Return the process-wide limiter of an endpoint (one per identity, settings and store).

    With a ``store`` the limits hold for every process using it; ``scope`` (say, a fingerprint of the API key)
    separates budgets of one endpoint that the server counts apart.
    """
    key = (endpoint_id + scope, max_concurrency, rpm, tpm, store)
    if key not in _SHARED:
        shared = None
        if store is not None and store.backend != "process":
            budget = Budget(max_concurrency, rpm, tpm)
            shared = SharedLimits(open_store(store, endpoint_id + scope), budget, lease_ttl=store.lease_ttl)
        _SHARED[key] = Limiter(max_concurrency=max_concurrency, rpm=rpm, tpm=tpm, shared=shared)
    return _SHARED[key]
