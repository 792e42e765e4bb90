"""The batch job store and queue against the fake server's Batch API: a submission interrupted after the
provider created the batch is found again (never created twice), claims of dead processes are void, per-file
limits split jobs, a failed validation and a cancellation leave no request unaccounted for."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pref_assets.clients.batch_api import BatchAPIClient
from pref_assets.clients.batch_store import (
    METADATA_KEY,
    BatchEndpoint,
    BatchQueue,
    BatchRequest,
    JobStore,
    plan_requests,
)
from pref_assets.clients.cache import RequestCache
from pref_assets.core.batch_jobs import FileLimits, RequestLine, split_files
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

FAST = {"validating_s": 0.1, "in_progress_s": 0.3, "finalizing_s": 0.1}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    knobs = FAST | getattr(request, "param", {})
    with run_fake_openai(batch=json.dumps(knobs)) as running:
        yield running


def _queue(server: FakeServer, tmp_path: Path, **endpoint: Any) -> BatchQueue:
    config = BatchEndpoint("fake", server.base_url, **endpoint)
    return BatchQueue(JobStore(tmp_path / "jobs.sqlite"), RequestCache(tmp_path / "cache.sqlite"), {"fake": config},
                      lambda name: BatchAPIClient(server.base_url), prices=lambda e, m: (1.0, 2.0))  # fmt: skip


def _requests(n: int) -> list[BatchRequest]:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 16}
              for i in range(n)]  # fmt: skip
    return [BatchRequest(f"key-{i}", "fake", "m", body) for i, body in enumerate(bodies)]


def _counters(server: FakeServer) -> dict[str, Any]:
    return dict(server.client.get(f"{server.root_url}/_batches").json())


def _until_collected(queue: BatchQueue, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while queue.store.jobs(states=["submitting", "open"]):
        assert time.monotonic() < deadline, [j.summary() for j in queue.store.jobs()]
        time.sleep(0.2)
        queue.poll()


def test_a_batch_created_before_a_crash_is_found_by_its_metadata(server: FakeServer, tmp_path: Path) -> None:
    queue = _queue(server, tmp_path)
    requests = _requests(6)
    lines = [RequestLine(r.key, r.body) for r in requests]
    (file,) = split_files(lines, FileLimits())
    # what a process did before it died: recorded the job, uploaded, created the batch, never heard its id
    job_key, _ = queue.store.record_job("fake", file, {r.key: r.model for r in requests}, 1)
    queue.store.mark_create_tried(job_key)
    with BatchAPIClient(server.base_url) as client:
        created = client.create(client.upload(file.content, "x.jsonl"), window="24h", metadata={METADATA_KEY: job_key})
    planned = plan_requests(queue, requests)
    assert planned.pending_jobs == (job_key,)
    assert queue.store.job(job_key).provider_id == created["id"]  # type: ignore[union-attr]
    assert _counters(server)["batches"] == 1
    _until_collected(queue)
    assert queue.cache.count() == 6 and _counters(server)["batches"] == 1


def test_a_claim_of_a_live_process_blocks_and_one_of_a_dead_process_is_void(server: FakeServer, tmp_path: Path) -> None:
    queue = _queue(server, tmp_path)
    lines = [RequestLine(r.key, r.body) for r in _requests(2)]
    (file,) = split_files(lines, FileLimits())
    job_key, _ = queue.store.record_job("fake", file, {line.key: "m" for line in lines}, 1)
    host = socket.gethostname()
    queue.store._db.execute("UPDATE jobs SET claimed_until = ?, claimed_by = ?", (time.time() + 300, f"{host}:1"))
    assert not queue.store.claim(job_key)  # pid 1 is alive
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    queue.store._db.execute("UPDATE jobs SET claimed_by = ?", (f"{host}:{dead}",))
    assert queue.store.claim(job_key)


@pytest.mark.parametrize("server", [{"max_requests_per_file": 4}], indirect=True)
def test_jobs_split_by_the_endpoint_limits_pass_validation(server: FakeServer, tmp_path: Path) -> None:
    queue = _queue(server, tmp_path, limits=FileLimits(max_requests=4))
    planned = plan_requests(queue, _requests(10))
    assert len(planned.pending_jobs) == 3
    _until_collected(queue)
    assert queue.cache.count() == 10 and _counters(server)["statuses"] == {"completed": 3}


@pytest.mark.parametrize("server", [{"max_requests_per_file": 4}], indirect=True)
def test_a_file_over_the_provider_limit_fails_every_request_with_its_error(server: FakeServer, tmp_path: Path) -> None:
    queue = _queue(server, tmp_path, max_attempts=1)
    requests = _requests(6)
    plan_requests(queue, requests)
    _until_collected(queue)
    planned = plan_requests(queue, requests)
    assert not planned.pending_jobs and set(planned.failed) == {r.key for r in requests}
    assert all("over the limit of 4 per file" in error for error in planned.failed.values())
    assert queue.store.retry_failed() == 6 and queue.resubmit()  # the CLI's resubmit


@pytest.mark.parametrize("server", [{"in_progress_s": 3.0}], indirect=True)
def test_a_cancelled_job_keeps_its_finished_lines_and_the_rest_wait_for_resubmit(
    server: FakeServer, tmp_path: Path
) -> None:
    queue = _queue(server, tmp_path)
    requests = _requests(10)
    (job_key,) = plan_requests(queue, requests).pending_jobs
    time.sleep(1.6)  # about half of the in-progress time
    assert "cancelling" in queue.cancel(job_key)
    _until_collected(queue)
    (job,) = queue.store.jobs()
    assert job.status == "cancelled" and 0 < job.completed < 10 and job.failed == 10 - job.completed
    planned = plan_requests(queue, [r for r in requests if queue.cache.get(r.key) is None])
    assert not planned.pending_jobs and len(planned.failed) == 10 - job.completed
    assert all(error.startswith("batch cancelled") for error in planned.failed.values())
    assert queue.store.retry_failed(job_key) == 10 - job.completed
    queue.resubmit()
    _until_collected(queue)
    assert queue.cache.count() == 10 and _counters(server)["repeated_after_success"] == 0
    states = queue.store.line_states(r.key for r in requests)
    assert {s.state for s in states.values()} == {"done"}


def test_a_refused_submission_fails_its_requests_with_the_refusal(tmp_path: Path) -> None:
    with run_fake_openai(api_key="right-key-0123456789", batch=json.dumps(FAST)) as server:
        queue = _queue(server, tmp_path)  # its client sends no key: 401
        requests = _requests(3)
        (job_key,) = plan_requests(queue, requests).pending_jobs
        job = queue.store.job(job_key)
        assert job is not None and job.state == "collected" and job.status == "failed" and job.failed == 3
        planned = plan_requests(queue, requests)
        assert not planned.pending_jobs and set(planned.failed) == {r.key for r in requests}
        assert all(e.startswith("batch refused: HTTP 401: invalid API key") for e in planned.failed.values())
        assert _counters(server)["batches"] == 0


def test_an_allowance_submits_the_requests_that_fit_in_order_and_refuses_the_rest(
    server: FakeServer, tmp_path: Path
) -> None:
    queue = _queue(server, tmp_path)
    requests = [replace(r, estimate_usd=1.0) for r in _requests(5)]
    planned = plan_requests(queue, requests, allowance_usd=2.5)
    assert planned.refused == {"key-2", "key-3", "key-4"} and planned.committed_usd == 2.0
    (job_key,) = planned.pending_jobs
    assert sorted(queue.store.job_keys_of(job_key)) == ["key-0", "key-1"]
    assert set(queue.store.line_states([r.key for r in requests])) == {"key-0", "key-1"}  # the refused: no record
    # a later plan with room submits the rest; those already in the job are not submitted again
    again = plan_requests(queue, requests, allowance_usd=10.0)
    assert not again.refused and again.committed_usd == 3.0 and len(again.pending_jobs) == 2
    nothing = plan_requests(queue, [replace(r, key=f"other-{r.key}") for r in requests], allowance_usd=0.0)
    assert nothing.refused == {f"other-{r.key}" for r in requests} and not nothing.pending_jobs
    _until_collected(queue)
    assert _counters(server)["lines"] == 5
