"""Limits shared by every process that calls an endpoint, so that its configured ``max_concurrency``, ``rpm`` and
``tpm`` hold for the sum of all runs and workers, not for each.

The in-process ``Limiter`` keeps adapting on its own (AIMD window, ``Retry-After`` pause, breaker and probe);
before each attempt it also asks a store for a concurrency lease and for the endpoint's rate budget:

- ``local``: a SQLite file (WAL) per endpoint under ``<storage_dir>/limits/``, for the processes of one machine;
- ``redis``: the same state in Redis, changed atomically by Lua scripts, for processes on many machines.

A lease expires ``lease_ttl`` seconds after it was last renewed. A background thread of each process renews the
leases of its requests in flight, and sends releases, token corrections and ``Retry-After`` pauses in batches, so
a request costs one store round trip on its way in; a process killed with SIGKILL frees its slots within
``lease_ttl``. A pause one process is told to take is stored (``paused_until``) and holds for all.

An endpoint limited by ``max_concurrency`` alone (no ``rpm``, no ``tpm``: no budget to take per request) hands a
lease its request gave back straight to the next request of the same process, without a store round trip, for up
to ``HANDOFF_S`` after the lease was taken from the store; a lease nobody took within ``SPARE_IDLE_S`` goes back.
So a busy process asks the store about once a second per slot instead of once per request, the slots it holds
never exceed what the store granted, and other processes get their turn at the latest when a lease returns. A
pause another process stored reaches a process at its next trip to the store, within ``HANDOFF_S``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Backend = Literal["process", "local", "redis"]
DEFAULT_LEASE_TTL = 6.0
# how soon a request asks again when every slot is leased (a lease's end is not known in advance)
FULL_POLL = 0.02
# how long after it was taken from the store a given-back lease may pass to the next request of the process
HANDOFF_S = 1.0
# how long a given-back lease waits for the next request of its process before it goes back to the store
SPARE_IDLE_S = 0.05

_log = logging.getLogger(__name__)


class SharedLimitsError(RuntimeError):
    """The shared store could not be reached; the request is not sent unpaced."""


@dataclass(frozen=True, slots=True)
class Budget:
    """An endpoint's configured limits, for the sum of every process; a None rate is no limit."""

    max_concurrency: int
    rpm: float | None = None
    tpm: float | None = None

    def rate(self, per_minute: float | None) -> tuple[float, float] | None:
        """Return (units per second, capacity: one second's worth, at least 1) of a per-minute budget."""
        if per_minute is None:
            return None
        rate = per_minute / 60.0
        return rate, max(1.0, rate)


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """Where shared limits live: ``local`` (``location`` a folder) or ``redis`` (``location`` a URL)."""

    backend: Backend
    location: str
    lease_ttl: float = DEFAULT_LEASE_TTL


class Store(Protocol):
    """The shared state of one endpoint; every change is atomic. Waits are seconds from now."""

    async def acquire(self, lease: str, budget: Budget, tokens: float) -> float:
        """Take a lease and the rate budget of one request and return 0, or return how long to wait first."""
        ...

    def settle(self, released: Sequence[str], budget: Budget, tokens: float, pause: float) -> None:
        """Drop ``released`` leases, charge ``tokens`` (negative: refund), pause everyone ``pause`` seconds."""
        ...

    def renew(self, leases: Sequence[str]) -> None:
        """Extend ``leases`` to ``lease_ttl`` from now."""
        ...


def refill(level: float | None, stamp: float | None, rate: float, capacity: float, now: float) -> float:
    """Return a token bucket's level at ``now`` (a bucket never written is full)."""
    if level is None or stamp is None:
        return capacity
    return min(capacity, level + max(0.0, now - stamp) * rate)


def store_name(endpoint: str) -> str:
    """Return the store's name of an endpoint identity: 24 hex digits of its SHA-256."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:24]


def open_store(spec: StoreSpec, endpoint: str) -> Store:
    """Return the store of ``endpoint`` (its identity: URL and key fingerprint) described by ``spec``."""
    if spec.backend == "local":
        from pref_assets.clients.limits_sqlite import SqliteStore

        return SqliteStore(Path(spec.location) / f"{store_name(endpoint)}.sqlite", lease_ttl=spec.lease_ttl)
    if spec.backend == "redis":
        from pref_assets.clients.limits_redis import RedisStore

        return RedisStore(spec.location, f"pref-limits:{store_name(endpoint)}", lease_ttl=spec.lease_ttl)
    raise ValueError(f"no shared store for backend {spec.backend!r}")


class SharedLimits:
    """One process's side of an endpoint's shared limits: takes leases, and lets a thread renew and settle them."""

    def __init__(self, store: Store, budget: Budget, *, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        self.store = store
        self.budget = budget
        self.lease_ttl = lease_ttl
        self._ids = itertools.count()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._handoff = budget.rpm is None and budget.tpm is None
        self._held: dict[str, float] = {}  # lease -> when it was taken from the store (monotonic)
        self._spare: deque[tuple[str, float]] = deque()  # given-back leases of this process, and when
        self._released: list[str] = []
        self._tokens = 0.0
        self._pause = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    async def acquire(self, tokens: float) -> tuple[str | None, float]:
        """Return a lease (and 0) once one and the budget of a request were taken, else (None, seconds to wait)."""
        spare = self._reuse() if self._handoff else None
        if spare is not None:
            return spare, 0.0
        lease = f"{self._holder}:{next(self._ids)}"
        wait = await self.store.acquire(lease, self.budget, tokens)
        if wait > 0:
            return None, wait
        with self._lock:
            idle = not self._held
            self._held[lease] = time.monotonic()
        self._start()
        if idle:  # the renewing thread now also returns idle spare leases: it wakes more often
            self._wake.set()
        return lease, 0.0

    def release(self, lease: str) -> None:
        """Give a lease back: to the next request of this process while it is young enough to pass on, else to the
        store (soon, in a batch; it is no longer renewed from then on)."""
        now = time.monotonic()
        with self._lock:
            taken = self._held.get(lease)
            if self._handoff and taken is not None and now - taken < HANDOFF_S:
                self._spare.append((lease, now))
                return
            self._held.pop(lease, None)
            self._released.append(lease)
        self._wake.set()

    def charge(self, tokens: float) -> None:
        """Settle the token estimate of a request: charge what it used beyond it (negative: refund)."""
        if self.budget.tpm is not None and tokens:
            with self._lock:
                self._tokens += tokens
            self._wake.set()

    def pause(self, seconds: float) -> None:
        """Pause every process using the endpoint for ``seconds`` from now."""
        if seconds > 0:
            with self._lock:
                self._pause = max(self._pause, seconds)
            self._wake.set()

    def held(self) -> int:
        """Return how many leases this process holds."""
        with self._lock:
            return len(self._held)

    def flush(self) -> None:
        """Give back the spare leases and send the pending releases, corrections and pause now (in the calling
        thread); when the renewing thread is sending its batch, wait until that batch is in the store."""
        self._return_spares(idle_for=0.0)
        self._send()

    def _reuse(self) -> str | None:
        """Return a spare lease young enough to pass on (the older ones go back to the store), or None."""
        now = time.monotonic()
        with self._lock:
            while self._spare:
                lease, _ = self._spare.popleft()
                if now - self._held[lease] < HANDOFF_S:
                    return lease
                del self._held[lease]
                self._released.append(lease)
        return None

    def _return_spares(self, idle_for: float) -> None:
        """Send back the spare leases given back ``idle_for`` seconds ago or earlier."""
        now = time.monotonic()
        with self._lock:
            while self._spare and now - self._spare[0][1] >= idle_for:
                lease, _ = self._spare.popleft()
                del self._held[lease]
                self._released.append(lease)

    def _send(self) -> None:
        with self._flushing:
            with self._lock:
                released, tokens, pause = self._released, self._tokens, self._pause
                self._released, self._tokens, self._pause = [], 0.0, 0.0
            if released or tokens or pause:
                self.store.settle(released, self.budget, tokens, pause)

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="shared-limits", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        every = self.lease_ttl / 4
        renewed = time.monotonic()
        while True:
            with self._lock:
                busy = bool(self._held)
            self._wake.wait(SPARE_IDLE_S if busy and self._handoff else every)
            self._wake.clear()
            try:
                self._return_spares(idle_for=SPARE_IDLE_S)
                self._send()
                if time.monotonic() - renewed >= every:
                    renewed = time.monotonic()
                    with self._lock:
                        held = list(self._held)
                    if held:
                        self.store.renew(held)
            except Exception as err:
                _log.warning("shared limits: %s: %s (retrying)", type(err).__name__, err)
                time.sleep(min(1.0, every))
