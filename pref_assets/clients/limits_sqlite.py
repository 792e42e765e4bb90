"""Shared limits in a SQLite file (WAL), for the processes of one machine.

One file per endpoint: ``leases`` (id, expiry) and ``budgets`` (name, level, stamp: the request and token buckets,
and ``paused_until``). Every change is one ``BEGIN IMMEDIATE`` transaction, so processes take turns; times are
this machine's wall clock. A request's way in reads the state in one statement and writes its lease (and the
buckets it takes from); expired leases are counted out there and deleted with the batched releases.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pref_assets.clients.shared_limits import FULL_POLL, Budget, SharedLimitsError, refill
from pref_assets.private import make_dirs

PAUSED = "paused_until"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires);
CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, level REAL NOT NULL, stamp REAL NOT NULL);
"""
# the buckets and pause, and the unexpired leases under the name _IN_FLIGHT, in one statement
_IN_FLIGHT = "#in_flight"
_STATE = f"""
SELECT name, level, stamp FROM budgets
UNION ALL SELECT '{_IN_FLIGHT}', count(*), 0 FROM leases WHERE expires > ?
"""


class SqliteStore:
    """An endpoint's shared limits in ``path``; ``clock`` is wall time in seconds (shared by the machine)."""

    def __init__(self, path: Path, *, lease_ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.lease_ttl = lease_ttl
        self.clock = clock
        self._local = threading.local()
        make_dirs(path.parent, private=True)
        try:
            self._connection().executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise SharedLimitsError(f"shared limits file {self.path}: {err}") from err

    async def acquire(self, lease: str, budget: Budget, tokens: float) -> float:
        """Take a lease and one request's budget and return 0, or return how long to wait."""
        return self.acquire_now(lease, budget, tokens)

    def acquire_now(self, lease: str, budget: Budget, tokens: float) -> float:
        """``acquire``, synchronously."""
        now = self.clock()
        with self._write() as db:
            state = {name: (level, stamp) for name, level, stamp in db.execute(_STATE, (now,))}
            paused = state.get(PAUSED, (0.0, 0.0))[0]
            if paused > now:
                return paused - now
            if state[_IN_FLIGHT][0] >= budget.max_concurrency:
                return FULL_POLL
            levels, wait = _take(state, budget, tokens, now)
            if wait > 0:
                return wait
            db.executemany("INSERT OR REPLACE INTO budgets VALUES (?, ?, ?)", [(n, v, now) for n, v in levels])
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?)", (lease, now + self.lease_ttl))
        return 0.0

    def settle(self, released: Sequence[str], budget: Budget, tokens: float, pause: float) -> None:
        """Drop ``released`` leases, charge ``tokens`` to the token bucket, pause ``pause`` seconds from now."""
        now = self.clock()
        with self._write() as db:
            db.executemany("DELETE FROM leases WHERE id = ?", [(lease,) for lease in released])
            db.execute("DELETE FROM leases WHERE expires <= ?", (now,))  # leases of processes that died
            state = {name: (level, stamp) for name, level, stamp in db.execute("SELECT * FROM budgets")}
            limit = budget.rate(budget.tpm)
            if tokens and limit is not None:
                level = refill(*_bucket(state, "tokens"), *limit, now) - tokens
                db.execute("INSERT OR REPLACE INTO budgets VALUES ('tokens', ?, ?)", (level, now))
            if pause > 0 and now + pause > state.get(PAUSED, (0.0, 0.0))[0]:
                db.execute("INSERT OR REPLACE INTO budgets VALUES (?, ?, ?)", (PAUSED, now + pause, now))

    def renew(self, leases: Sequence[str]) -> None:
        """Extend ``leases`` to ``lease_ttl`` from now."""
        expires = self.clock() + self.lease_ttl
        with self._write() as db:
            db.executemany("UPDATE leases SET expires = ? WHERE id = ?", [(expires, lease) for lease in leases])

    def in_flight(self) -> int:
        """Return how many unexpired leases there are."""
        with self._write() as db:
            (count,) = db.execute("SELECT count(*) FROM leases WHERE expires > ?", (self.clock(),)).fetchone()
        return int(count)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as err:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SharedLimitsError(f"shared limits file {self.path}: {err}") from err
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: no fsync per commit
            self._local.db = db
        return db


def _take(
    state: dict[str, tuple[float, float]], budget: Budget, tokens: float, now: float
) -> tuple[list[tuple[str, float]], float]:
    """Return the bucket levels after one request takes its share, and 0; or ([], how long to wait)."""
    levels: list[tuple[str, float]] = []
    wait = 0.0
    for name, per_minute, amount in (("requests", budget.rpm, 1.0), ("tokens", budget.tpm, tokens)):
        limit = budget.rate(per_minute)
        if limit is None:
            continue
        rate, capacity = limit
        level = refill(*_bucket(state, name), rate, capacity, now)
        need = min(amount, capacity)
        wait = max(wait, (need - level) / rate if level < need else 0.0)
        levels.append((name, level - amount))
    return (levels, 0.0) if wait <= 0 else ([], wait)


def _bucket(state: dict[str, tuple[float, float]], name: str) -> tuple[float | None, float | None]:
    """Return a bucket's stored (level, stamp), or (None, None) when it was never written."""
    return state.get(name, (None, None))
