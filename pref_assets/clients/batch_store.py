"""Batch jobs kept durably, and the work around them: submit, poll, collect into the request cache, resubmit.

The store is a SQLite file beside the request cache. A job is written down before its batch is created (state
``submitting``, keyed by a hash of its request keys and sent as the batch's metadata), and its provider id right
after: a process that dies in between leaves a job whose batch is found again by that metadata, never created
twice. Each request key has one line row (its body, attempts, state) and each job the asset partitions waiting on
it, so the poller knows what to run again once every job of a partition has ended.

Line states: ``pending`` (in an open job), ``retry`` (to be sent in a new job), ``done`` (its answer is in the
request cache), ``online`` (out of batch attempts; to be sent online), ``failed`` (out of attempts, or left undone
by a cancelled job; the provider's error is kept for the row, and ``retry_failed`` gives it a fresh round).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pref_assets.clients.batch_api import BatchAPIClient, BatchAPIError
from pref_assets.clients.cache import RequestCache

# the online client's reading of a completion, so a batch answer is read and cached exactly as an online one
from pref_assets.clients.llm import ChatResult, _cacheable, _parse_completion
from pref_assets.core.batch_jobs import (
    OPENAI_SHAPE,
    BatchFile,
    FileLimits,
    JobStatus,
    RequestLine,
    parse_result_lines,
    split_files,
)
from pref_assets.core.cost import cost_usd
from pref_assets.core.secrets import Secrets
from pref_assets.private import open_sqlite

METADATA_KEY = "pref_assets_job"
CLAIM_S = 300.0
PENDING, RETRY, DONE, ONLINE, FAILED = "pending", "retry", "done", "online", "failed"
SUBMITTING, OPEN, COLLECTED = "submitting", "open", "collected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_id TEXT,
    status TEXT,
    attempt INTEGER NOT NULL,
    create_tried INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    recorded_at REAL NOT NULL,
    submitted_at REAL,
    ended_at REAL,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS job_lines (job_key TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (job_key, key));
CREATE TABLE IF NOT EXISTS lines (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    job_key TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS waiters (
    job_key TEXT NOT NULL, asset TEXT NOT NULL, partition_key TEXT NOT NULL, served INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_key, asset, partition_key)
);
CREATE INDEX IF NOT EXISTS lines_state ON lines (state, endpoint);
CREATE INDEX IF NOT EXISTS waiters_open ON waiters (served, asset, partition_key);
"""


@dataclass(frozen=True, slots=True)
class BatchEndpoint:
    """What batch mode needs to know of one endpoint."""

    name: str
    identity: str  # the endpoint's identity in request keys
    window: str = "24h"
    limits: FileLimits = field(default_factory=FileLimits)
    max_attempts: int = 3
    fallback_online: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    """One job as the store knows it."""

    job_key: str
    endpoint: str
    state: str
    provider_id: str | None
    status: str | None
    attempt: int
    recorded_at: float
    submitted_at: float | None
    ended_at: float | None
    total: int
    completed: int
    failed: int
    expired: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    error: str | None

    @property
    def turnaround_s(self) -> float | None:
        """Return the seconds from submission to the end, once ended."""
        if self.submitted_at is None or self.ended_at is None:
            return None
        return round(max(0.0, self.ended_at - self.submitted_at), 3)

    def summary(self) -> dict[str, Any]:
        """Return the job's figures as plain data (metadata, CLI)."""
        return {
            "job": self.job_key, "provider_id": self.provider_id, "endpoint": self.endpoint, "state": self.state,
            "status": self.status, "attempt": self.attempt, "submitted": self.total, "completed": self.completed,
            "failed": self.failed, "expired": self.expired, "cost_usd": round(self.cost_usd, 6),
            "turnaround_s": self.turnaround_s, "error": self.error,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class LineState:
    """One request's state in batch mode."""

    key: str
    state: str
    job_key: str | None
    error: str | None


class JobStore:
    """The SQLite file of batch jobs (0600 in a 0700 folder unless ``private`` is False)."""

    def __init__(self, path: str | Path, *, private: bool = True) -> None:
        self.path = Path(path)
        self._db = open_sqlite(self.path, private=private)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements as one immediate transaction (one writer at a time across processes)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------ lines

    def line_states(self, keys: Iterable[str]) -> dict[str, LineState]:
        """Return the known states of ``keys``."""
        out: dict[str, LineState] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, state, job_key, error FROM lines WHERE key IN ({marks})"
            out |= {row[0]: LineState(*row) for row in self._db.execute(query, chunk)}
        return out

    def lines_in(self, state: str, endpoint: str) -> list[RequestLine]:
        """Return the request lines of ``endpoint`` in ``state``."""
        rows = self._db.execute("SELECT key, body FROM lines WHERE state = ? AND endpoint = ?", (state, endpoint))
        return [RequestLine(key, json.loads(body)) for key, body in rows]

    def attempts(self, key: str) -> int:
        """Return how many times a request was submitted."""
        row = self._db.execute("SELECT attempts FROM lines WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def retry_failed(self, job_key: str | None = None) -> int:
        """Give the failed requests (of one job, or all) a fresh round of attempts; return how many."""
        where = "state IN (?, ?)" + (" AND job_key = ?" if job_key else "")
        args = (FAILED, ONLINE, *((job_key,) if job_key else ()))
        return self._db.execute(f"UPDATE lines SET state = '{RETRY}', attempts = 0 WHERE {where}", args).rowcount

    def set_line(self, key: str, state: str, error: str | None = None) -> None:
        """Set one request's state (and the error a failed one carries)."""
        self._db.execute("UPDATE lines SET state = ?, error = ? WHERE key = ?", (state, error, key))

    # ------------------------------------------------------------ jobs

    def record_job(self, endpoint: str, file: BatchFile, models: Mapping[str, str], attempt: int) -> tuple[str, bool]:
        """Write down a job for ``file`` (state ``submitting``) with its lines, before anything is sent; return its
        key and whether it was new (an existing one is the same requests, recorded earlier)."""
        job_key = file.job_key(f"{endpoint}#{attempt}")
        now = time.time()
        with self.transaction() as db:
            made = db.execute(
                "INSERT OR IGNORE INTO jobs (job_key, endpoint, state, attempt, recorded_at, total) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (job_key, endpoint, SUBMITTING, attempt, now, len(file.lines)),
            ).rowcount
            for line in file.lines:
                db.execute("INSERT OR IGNORE INTO job_lines (job_key, key) VALUES (?, ?)", (job_key, line.key))
                body = json.dumps(line.body, ensure_ascii=False, separators=(",", ":"))
                db.execute(
                    "INSERT INTO lines (key, endpoint, model, body, state, attempts, job_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET state = excluded.state, job_key = excluded.job_key,"
                    " attempts = lines.attempts + 1, error = NULL",
                    (line.key, endpoint, models[line.key], body, PENDING, 1, job_key),
                )
        return job_key, bool(made)

    def add_waiters(self, job_keys: Iterable[str], asset: str, partitions: Iterable[str]) -> None:
        """Record that ``asset``'s ``partitions`` wait on ``job_keys`` (a new wait once the last was served)."""
        with self.transaction() as db:
            for job_key in set(job_keys):
                for partition in partitions:
                    db.execute(
                        "INSERT INTO waiters (job_key, asset, partition_key) VALUES (?, ?, ?)"
                        " ON CONFLICT DO UPDATE SET served = 0",
                        (job_key, asset, partition),
                    )

    def claim(self, job_key: str) -> bool:
        """Take the right to send ``job_key``'s create call for a while; False if a live process holds it (a
        claim of a process of this machine that died is void at once, any other once it times out)."""
        now, me = time.time(), _process_id()
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, claimed_until, claimed_by FROM jobs WHERE job_key = ?", (job_key,)
            ).fetchone()
            if row is None or row[0] != SUBMITTING or (row[1] >= now and _alive(row[2])):
                return False
            db.execute(
                "UPDATE jobs SET claimed_until = ?, claimed_by = ? WHERE job_key = ?", (now + CLAIM_S, me, job_key)
            )
        return True

    def mark_create_tried(self, job_key: str) -> None:
        """Note that a create call for ``job_key`` may have reached the provider."""
        self._db.execute("UPDATE jobs SET create_tried = 1 WHERE job_key = ?", (job_key,))

    def create_tried(self, job_key: str) -> bool:
        """Return whether a create call for ``job_key`` may have reached the provider."""
        row = self._db.execute("SELECT create_tried FROM jobs WHERE job_key = ?", (job_key,)).fetchone()
        return bool(row and row[0])

    def opened(self, job_key: str, status: JobStatus) -> None:
        """Record the provider's batch of ``job_key``."""
        self._db.execute(
            "UPDATE jobs SET state = ?, provider_id = ?, status = ?, submitted_at = ?, error = NULL, claimed_until = 0"
            " WHERE job_key = ?",
            (OPEN, status.provider_id, status.status, status.created_at or time.time(), job_key),
        )

    def submit_failed(self, job_key: str, error: str) -> None:
        """Record why ``job_key`` is not submitted yet (it stays ``submitting``; the poller tries again)."""
        self._db.execute("UPDATE jobs SET error = ?, claimed_until = 0 WHERE job_key = ?", (error[:500], job_key))

    def update_status(self, job_key: str, status: JobStatus) -> None:
        """Record the provider's latest view of an open job."""
        self._db.execute(
            "UPDATE jobs SET status = ?, completed = ?, failed = ? WHERE job_key = ?",
            (status.status, status.completed, status.failed, job_key),
        )

    def collected(self, job_key: str, figures: Mapping[str, Any]) -> None:
        """Record an ended job whose results are in the cache and whose lines have their next state."""
        columns = ", ".join(f"{name} = ?" for name in figures)
        self._db.execute(
            f"UPDATE jobs SET state = ?, {columns} WHERE job_key = ?", (COLLECTED, *figures.values(), job_key)
        )

    def job(self, job_key: str) -> Job | None:
        """Return one job."""
        return next(iter(self._jobs("WHERE job_key = ?", (job_key,))), None)

    def jobs(self, *, states: Sequence[str] | None = None, endpoint: str | None = None) -> list[Job]:
        """Return jobs, oldest first, optionally only those in ``states`` or of ``endpoint``."""
        clauses, args = [], []
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if endpoint:
            clauses.append("endpoint = ?")
            args.append(endpoint)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._jobs(f"{where} ORDER BY recorded_at, job_key", tuple(args))

    def job_keys_of(self, job_key: str) -> list[str]:
        """Return the request keys of a job."""
        return [r[0] for r in self._db.execute("SELECT key FROM job_lines WHERE job_key = ?", (job_key,))]

    def models_of(self, keys: Iterable[str]) -> dict[str, str]:
        """Return the API model of each known request key."""
        keys = list(keys)
        out: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = f"SELECT key, model FROM lines WHERE key IN ({','.join('?' * len(chunk))})"
            out |= dict(self._db.execute(query, chunk).fetchall())
        return out

    def waiting_jobs(self, asset: str, partition: str, *, unserved: bool = False) -> list[Job]:
        """Return the jobs ``asset``'s ``partition`` waited on, newest wait included (``unserved``: only those its
        step has not run on yet)."""
        query = "SELECT job_key FROM waiters WHERE asset = ? AND partition_key = ?"
        rows = self._db.execute(query + (" AND served = 0" if unserved else ""), (asset, partition)).fetchall()
        return [job for (key,) in rows if (job := self.job(key)) is not None]

    def ready_waiters(self) -> list[tuple[str, str, list[str]]]:
        """Return (asset, partition, job keys) whose jobs have all been collected and whose step has not run on them."""
        rows = self._db.execute(
            "SELECT w.asset, w.partition_key, w.job_key, j.state FROM waiters w JOIN jobs j USING (job_key)"
            " WHERE w.served = 0"
        ).fetchall()
        groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for asset, partition, job_key, state in rows:
            groups[(asset, partition)].append((job_key, state))
        return [
            (asset, partition, [k for k, _ in jobs])
            for (asset, partition), jobs in groups.items()
            if all(state == COLLECTED for _, state in jobs)
        ]

    def served(self, asset: str, partition: str) -> None:
        """Record that ``asset``'s ``partition`` has run on its jobs' answers (its wait is over)."""
        self._db.execute("UPDATE waiters SET served = 1 WHERE asset = ? AND partition_key = ?", (asset, partition))

    def waiters_of(self, job_key: str) -> list[tuple[str, str]]:
        """Return the (asset, partition) pairs waiting on a job."""
        rows = self._db.execute("SELECT asset, partition_key FROM waiters WHERE job_key = ?", (job_key,))
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def _jobs(self, where: str, args: tuple[Any, ...]) -> list[Job]:
        columns = ", ".join(Job.__slots__)  # type: ignore[attr-defined]
        return [Job(*row) for row in self._db.execute(f"SELECT {columns} FROM jobs {where}", args)]


def _refused(err: BatchAPIError) -> bool:
    """Return whether the provider refused a request for good (a 4xx other than 408, 409 and 429)."""
    return 400 <= err.status < 500 and err.status not in (408, 409, 429) and not err.sent


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(holder: str | None) -> bool:
    """Return whether the process ``holder`` names may still be running (another machine's: assume so)."""
    host, _, pid = (holder or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return holder is not None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ClientFor = Callable[[str], BatchAPIClient]
PriceFor = Callable[[str, str], tuple[float, float]]


class BatchQueue:
    """Submits requests as batch jobs, polls them, and collects their answers into the request cache."""

    def __init__(
        self,
        store: JobStore,
        cache: RequestCache,
        endpoints: Mapping[str, BatchEndpoint],
        client_for: ClientFor,
        *,
        prices: PriceFor = lambda endpoint, model: (0.0, 0.0),
        secrets: Secrets | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.cache, self.endpoints = store, cache, endpoints
        self._client_for, self._prices = client_for, prices
        self._secrets = secrets or Secrets()
        self._log = log or (lambda message: None)

    # ------------------------------------------------------------ submitting

    def submit(self, endpoint: str, lines: Sequence[RequestLine], models: Mapping[str, str], attempt: int) -> list[str]:
        """Record and send jobs for ``lines`` (split by the endpoint's limits); return their keys. A job recorded
        before (the same requests) is not sent again, only finished if its submission never completed."""
        config = self.endpoints[endpoint]
        keys = []
        for file in split_files(lines, config.limits):
            job_key, _ = self.store.record_job(endpoint, file, models, attempt)
            keys.append(job_key)
            self.send(job_key, file)
        return keys

    def send(self, job_key: str, file: BatchFile | None = None) -> None:
        """Create the provider's batch of a ``submitting`` job, unless one already exists for it."""
        job = self.store.job(job_key)
        if job is None or job.state != SUBMITTING or not self.store.claim(job_key):
            return
        client = self._client_for(job.endpoint)
        try:
            if self.store.create_tried(job_key):
                found = client.find(METADATA_KEY, job_key)
                if found is not None:
                    self.store.opened(job_key, OPENAI_SHAPE.job_status(found))
                    self._log(f"batch job {job_key} found at the provider as {found.get('id')}")
                    return
            file = file or self._file_of(job_key, job.endpoint)
            file_id = client.upload(file.content, f"{job_key}.jsonl")
            self.store.mark_create_tried(job_key)
            config = self.endpoints[job.endpoint]
            created = client.create(file_id, window=config.window, metadata={METADATA_KEY: job_key})
            status = OPENAI_SHAPE.job_status(created)
            self.store.opened(job_key, status)
            self._log(f"batch job {job_key}: {status.provider_id} submitted, {len(file.lines)} requests")
        except BatchAPIError as err:
            message = self._secrets.mask(str(err))
            if _refused(err):  # nothing was created, and the same request would be refused again
                self.refused(job_key, f"batch refused: {message}")
                return
            self.store.submit_failed(job_key, message)
            self._log(f"batch job {job_key} not submitted yet: {message}")
        finally:
            client.close()

    def refused(self, job_key: str, error: str) -> None:
        """End a job the provider refused to take (a 4xx on upload or create): its requests fail with the refusal,
        and its waiting partitions run on; ``pref-assets batches resubmit`` sends them again once it is mended."""
        keys = self.store.job_keys_of(job_key)
        states = self.store.line_states(keys)
        with self.store.transaction():
            for key in keys:
                if states.get(key) is not None and states[key].job_key == job_key:
                    self.store.set_line(key, FAILED, error[:500])
            self.store.collected(job_key, {"status": "failed", "failed": len(keys), "error": error[:500],
                                           "ended_at": time.time()})  # fmt: skip
        self._log(f"batch job {job_key}: {error}")

    def _file_of(self, job_key: str, endpoint: str) -> BatchFile:
        keys = set(self.store.job_keys_of(job_key))
        lines = [line for line in self.store.lines_in(PENDING, endpoint) if line.key in keys]
        return BatchFile(tuple(lines), b"".join(OPENAI_SHAPE.request_line(line) for line in lines))

    # ------------------------------------------------------------ polling

    def poll(self) -> list[str]:
        """Send jobs not submitted yet, poll open ones, collect the ended ones and resubmit what failed; return
        the keys of the jobs collected by this call."""
        for job in self.store.jobs(states=[SUBMITTING]):
            self.send(job.job_key)
        ended = []
        for job in self.store.jobs(states=[OPEN]):
            client = self._client_for(job.endpoint)
            try:
                status = OPENAI_SHAPE.job_status(client.retrieve(str(job.provider_id)))
                self.store.update_status(job.job_key, status)
                if not status.open:
                    self.collect(job, status, client)
                    ended.append(job.job_key)
            except BatchAPIError as err:
                self._log(f"batch job {job.job_key} ({job.provider_id}): {self._secrets.mask(str(err))}")
            finally:
                client.close()
        self.resubmit()
        return ended

    def collect(self, job: Job, status: JobStatus, client: BatchAPIClient) -> None:
        """Read an ended job's result files into the cache and give each of its lines its next state."""
        keys = self.store.job_keys_of(job.job_key)
        known = frozenset(keys)
        results = {}
        unreadable: list[str] = []
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id is None:
                continue
            with client.download(file_id) as chunks:
                parsed = parse_result_lines(chunks, known)
            results |= {k: r for k, r in parsed.by_key.items() if k not in results or r.ok}
            unreadable += parsed.unreadable
        if unreadable:
            self._log(f"batch job {job.job_key}: {len(unreadable)} result lines unreadable, e.g. {unreadable[0]}")
        models = self.store.models_of(keys)
        states = self.store.line_states(keys)
        config = self.endpoints[job.endpoint]
        figures = {"completed": 0, "failed": 0, "expired": 0, "prompt_tokens": 0, "completion_tokens": 0}
        cost = 0.0
        with self.store.transaction():
            for key in keys:
                if states.get(key) is None or states[key].job_key != job.job_key:
                    continue  # the line moved on to another job
                outcome = results.get(key)
                answer = self._answer(outcome.body) if outcome is not None and outcome.ok else None
                if answer is not None and answer.ok:
                    self.cache.put(key, config.identity, models[key], _cacheable(answer))
                    self.store.set_line(key, DONE)
                    figures["completed"] += 1
                    figures["prompt_tokens"] += answer.prompt_tokens
                    figures["completion_tokens"] += answer.completion_tokens
                    price = self._prices(job.endpoint, models[key])
                    cost += cost_usd(answer.prompt_tokens, answer.completion_tokens, *price)
                    continue
                error = self._error(outcome, answer, status)
                figures["expired" if status.status == "expired" else "failed"] += 1
                self.store.set_line(key, *self._next_state(key, config, error, status.status))
            self.store.collected(job.job_key, figures | {"status": status.status, "cost_usd": cost,
                                                         "ended_at": status.ended_at or time.time()})  # fmt: skip
        self._log(f"batch job {job.job_key} ({job.provider_id}) {status.status}: {figures}")

    def _answer(self, body: dict[str, Any] | None) -> ChatResult | None:
        if body is None:
            return None
        masked = self._secrets.mask_values(body) if self._secrets else body
        return _parse_completion(httpx.Response(200, json=masked)).result(0.0, 1)

    def _error(self, outcome: Any, answer: Any, status: JobStatus) -> str:
        if outcome is None:
            reason = "; ".join(status.errors) or f"the batch ended {status.status} without this request"
            return f"batch {status.status}: {reason}"[:500]
        if answer is not None:
            return f"batch: {answer.error}"[:500]
        return self._secrets.mask(f"batch: {outcome.error}")[:500]

    def _next_state(self, key: str, config: BatchEndpoint, error: str, status: str) -> tuple[str, str]:
        if status == "cancelled":  # cancelled on purpose: nothing more is sent until `pref-assets batches resubmit`
            return FAILED, error
        if self.store.attempts(key) < config.max_attempts:
            return RETRY, error
        return (ONLINE if config.fallback_online else FAILED), error

    def resubmit(self) -> list[str]:
        """Send the lines waiting for another attempt as new jobs; the waiters of their old jobs wait on these."""
        made = []
        for endpoint in self.endpoints:
            lines = self.store.lines_in(RETRY, endpoint)
            if not lines:
                continue
            states = self.store.line_states(line.key for line in lines)
            old_jobs = {s.job_key for s in states.values() if s.job_key}
            waiters = {w for job_key in old_jobs for w in self.store.waiters_of(job_key)}
            attempt = 1 + max((j.attempt for k in old_jobs if (j := self.store.job(k))), default=0)
            models = self.store.models_of(line.key for line in lines)
            for file in split_files(lines, self.endpoints[endpoint].limits):
                job_key, _ = self.store.record_job(endpoint, file, models, attempt)
                for asset, partition in waiters:
                    self.store.add_waiters([job_key], asset, [partition])
                self.send(job_key, file)
                made.append(job_key)
            self._log(f"endpoint {endpoint}: {len(lines)} requests resubmitted (attempt {attempt})")
        return made

    def cancel(self, job_key: str) -> str:
        """Ask the provider to cancel a job; its finished lines are collected when it ends."""
        job = self.store.job(job_key)
        if job is None:
            raise KeyError(f"no batch job {job_key}")
        if job.state != OPEN or job.provider_id is None:
            return f"batch job {job_key} is {job.state}; nothing to cancel"
        with self._client_for(job.endpoint) as client:
            status = OPENAI_SHAPE.job_status(client.cancel(job.provider_id))
        self.store.update_status(job_key, status)
        return f"batch job {job_key} ({job.provider_id}): {status.status}"


@dataclass(frozen=True, slots=True)
class Planned:
    """Where a step's batch-mode requests stand: jobs still open, requests that failed for good (with the
    provider's error), requests to send online (answered already, or out of batch attempts with fallback), requests
    not submitted because they did not fit the allowance, and the estimated cost of those submitted now."""

    pending_jobs: tuple[str, ...]
    failed: dict[str, str]
    online: frozenset[str]
    refused: frozenset[str] = frozenset()
    committed_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One batch-mode request of a step: its cache key, endpoint, API model, body, and its cost estimated at the
    batch price."""

    key: str
    endpoint: str
    model: str
    body: dict[str, Any]
    estimate_usd: float = 0.0


def plan_requests(
    queue: BatchQueue, requests: Sequence[BatchRequest], *, allowance_usd: float | None = None
) -> Planned:
    """Submit the requests no job holds yet, finish submissions a crash left, and say what the step can use.

    ``requests`` are the step's batch-mode requests whose answers are not in the cache. With an ``allowance_usd``,
    requests to submit are taken in order while their estimated costs fit in it; the rest are refused (not
    submitted, not recorded)."""
    keys = list(dict.fromkeys(r.key for r in requests))
    if any(s.state == RETRY for s in queue.store.line_states(keys).values()):
        queue.resubmit()
    states = queue.store.line_states(keys)
    pending: set[str] = set()
    failed: dict[str, str] = {}
    online: set[str] = set()
    new: dict[str, dict[str, BatchRequest]] = defaultdict(dict)
    for request in requests:
        state = states.get(request.key)
        if state is None or state.state == DONE:  # DONE without a cached answer: the cache was cleared
            new[request.endpoint][request.key] = request
        elif state.state == PENDING and state.job_key:
            pending.add(state.job_key)
        elif state.state == ONLINE:
            online.add(request.key)
        else:
            failed[request.key] = state.error or "batch: failed"
    for job in (queue.store.job(k) for k in sorted(pending)):
        if job is not None and job.state == SUBMITTING:
            queue.send(job.job_key)
    refused, committed = _within(new, allowance_usd)
    for endpoint, fresh in new.items():
        if not fresh:
            continue
        attempt = 1 + max((queue.store.attempts(k) for k in fresh), default=0)
        lines = [RequestLine(r.key, r.body) for r in fresh.values()]
        pending |= set(queue.submit(endpoint, lines, {r.key: r.model for r in fresh.values()}, attempt))
    return Planned(tuple(sorted(pending)), failed, frozenset(online), frozenset(refused), committed)


def _within(new: dict[str, dict[str, BatchRequest]], allowance_usd: float | None) -> tuple[set[str], float]:
    """Keep in ``new`` the requests whose estimates fit in ``allowance_usd``, in order (the first that does not fit
    ends the admission); return the keys taken out and the estimated cost of those kept."""
    committed, refused = 0.0, set()
    for fresh in new.values():
        for key, request in list(fresh.items()):
            if allowance_usd is not None and (refused or committed + request.estimate_usd > allowance_usd):
                refused.add(key)
                del fresh[key]
            else:
                committed += request.estimate_usd
    return refused, committed
