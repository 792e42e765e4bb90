"""Batch mode in Dagster: LLM steps submit batch jobs and wait without a process; the ``llm_batches`` sensor
polls the jobs, collects their answers into the request cache and runs the waiting partitions again.

An LLM step of a batch-mode endpoint answers what the request cache holds (the same keys as online calls), and
submits the rest as batch jobs, or finds them in jobs already open. While any job of the step is open the step
yields no materialization (its downstream steps are skipped) and records an observation naming the jobs; the
sensor requests a run of the step's partitions and everything downstream once all their jobs have ended. Failed
lines are resubmitted up to ``batch_max_attempts`` times, then sent online (``batch_fallback: online``) or kept
as failed rows carrying the provider's error.

The step's spending cap (``budget_usd_per_step``) holds for what it submits: requests are submitted in order while
their cost, estimated at the batch price, fits in what the cap leaves; the rest fail as ``budget_exhausted`` like
online calls refused by the cap. When the step runs again on its jobs' answers, the requests it submitted count at
the same estimates, so it refuses the same requests again and spends what was left only on new ones (re-asks).
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from pref_assets.clients.batch_api import BatchAPIClient
from pref_assets.clients.batch_store import BatchEndpoint, BatchQueue, BatchRequest, Job, JobStore, plan_requests
from pref_assets.clients.cache import RequestCache, request_key
from pref_assets.clients.llm import REFUSED, ChatResult, EndpointConfigError, estimate_token_parts
from pref_assets.clients.retry import RetryPolicy
from pref_assets.clients.runner import Budget, run_calls, to_request
from pref_assets.core.batch_jobs import FileLimits
from pref_assets.core.calls import Call
from pref_assets.core.cost import cost_usd
from pref_assets.core.secrets import Secrets, secret_fingerprint
from pref_assets.defs.resources import LLMResource, _endpoint_identity
from pref_assets.settings import EMBEDDED, EndpointSettings, Settings

Prices = Callable[[str, str], tuple[float, float]]
SENSOR_NAME = "llm_batches"
BATCH_FAILED = "batch_failed"
STORE_FILE = "batch_jobs.sqlite"


@dataclass
class _Step:
    """A step that can wait for batch jobs, while its body runs: the batch prices, and the request keys of the jobs
    its partitions waited on (each charged once to its budget, at its estimate)."""

    prices: Prices
    waited: frozenset[str]
    charged: set[str] = field(default_factory=set)

    def charge(self, budget: Budget, requests: Iterable[BatchRequest]) -> None:
        """Count the requests the step submitted in an earlier run as spent, at their estimates."""
        for request in requests:
            if request.key in self.waited and request.key not in self.charged:
                budget.spent_usd += request.estimate_usd
                self.charged.add(request.key)


# Set while the body of an asset that can wait for batch jobs runs (``waits_for_batches``); the LLM calls of any
# other asset go online.
_STEP: ContextVar[_Step | None] = ContextVar("pref_assets_batch_step", default=None)


class BatchesPending(Exception):
    """Some of a step's requests wait in open batch jobs."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        super().__init__(f"{len(jobs)} batch job(s) open: {', '.join(j.job_key for j in jobs)}")
        self.jobs = list(jobs)


def batch_endpoints(endpoints: Sequence[EndpointSettings]) -> dict[str, BatchEndpoint]:
    """Return the batch-mode endpoints, as batch mode needs them."""
    out = {}
    for e in endpoints:
        if e.mode != "batch":
            continue
        if e.base_url == EMBEDDED:
            raise EndpointConfigError(f"endpoint {e.name}: the embedded server has no Batch API; set mode: online")
        limits = FileLimits(e.batch_max_requests_per_file, e.batch_max_bytes_per_file)
        out[e.name] = BatchEndpoint(e.name, _endpoint_identity(e), e.completion_window, limits,
                                    e.batch_max_attempts, e.batch_fallback == "online")  # fmt: skip
    return out


def store_path(cache_path: str | None) -> Path:
    """Return the batch job store's file: beside the request cache, which batch answers go into."""
    if cache_path is None:
        raise EndpointConfigError("batch mode needs the request cache (cache.enabled: true): answers go into it")
    return Path(cache_path).parent / STORE_FILE


def open_queue(
    llm: LLMResource,
    *,
    prices: Prices | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchQueue:
    """Return the batch queue of ``llm``'s batch-mode endpoints (close its store and cache when done)."""
    endpoints = batch_endpoints(llm.endpoints)
    path = store_path(llm.cache_path)

    def client_for(name: str) -> BatchAPIClient:
        endpoint = llm.endpoint(name)
        return BatchAPIClient(endpoint.base_url, api_key=llm.api_keys.get(name) or None, timeout=endpoint.timeout_s,
                              retry=RetryPolicy(max_attempts=endpoint.max_attempts))  # fmt: skip

    return BatchQueue(
        JobStore(path, private=llm.private_files),
        RequestCache(str(llm.cache_path), private=llm.private_files),
        endpoints,
        client_for,
        prices=prices or (lambda endpoint, model: (0.0, 0.0)),
        secrets=Secrets.of(*llm.api_keys.values()),
        log=log,
    )


def close_queue(queue: BatchQueue) -> None:
    """Close a queue's store and cache."""
    queue.store.close()
    queue.cache.close()


def batch_request(llm: LLMResource, call: Call, prices: Prices) -> BatchRequest:
    """Return a call as a batch request keyed as the online client keys it in the request cache, with its cost
    estimated at the batch ``prices`` (prompt tokens as the online budget estimates them, max_tokens out)."""
    request = to_request(call)
    body = request.body()
    endpoint = llm.endpoint(call.endpoint)
    namespace = secret_fingerprint(llm.api_keys.get(call.endpoint) or None)
    key = request_key(_endpoint_identity(endpoint), body, namespace)
    estimate = cost_usd(*estimate_token_parts(request), *prices(call.endpoint, call.model))
    return BatchRequest(key, call.endpoint, call.model, body, estimate)


def call_through_batches(
    context: dg.AssetExecutionContext, llm: LLMResource, budget: Budget, calls: Sequence[Call]
) -> list[ChatResult]:
    """Return one result per call, in order, when every batch-mode request has an answer or a final error; else
    submit what no job holds and fits the budget, record the step's partitions as waiting, and raise
    ``BatchesPending``."""
    modes = batch_endpoints(llm.endpoints)
    step = _STEP.get()
    if step is None and any(c.endpoint in modes for c in calls):
        context.log.info(f"{context.asset_key.to_user_string()} cannot wait for batch jobs: its calls go online")
    failed: dict[int, ChatResult] = {}
    if step is not None and (batch := {i: c for i, c in enumerate(calls) if c.endpoint in modes}):
        requests = {i: batch_request(llm, c, step.prices) for i, c in batch.items()}
        step.charge(budget, requests.values())
        queue = open_queue(llm, log=context.log.info)
        try:
            missing = [r for r in requests.values() if queue.cache.get(r.key) is None]
            planned = plan_requests(queue, missing, allowance_usd=_left(budget))
            budget.spent_usd += planned.committed_usd
            if planned.pending_jobs:
                queue.store.add_waiters(planned.pending_jobs, context.asset_key.to_user_string(), _partitions(context))
                raise BatchesPending([j for k in planned.pending_jobs if (j := queue.store.job(k)) is not None])
        finally:
            close_queue(queue)
        for i, r in requests.items():
            if r.key in planned.failed:
                failed[i] = _failed(BATCH_FAILED, planned.failed[r.key])
            elif r.key in planned.refused:
                failed[i] = _failed(REFUSED, f"budget of {budget.limit_usd} USD spent")
    send = [i for i in range(len(calls)) if i not in failed]
    answers = dict(zip(send, run_calls([calls[i] for i in send], llm.client, budget=budget, log=context.log.info),
                       strict=True))  # fmt: skip
    return [answers[i] if i in answers else failed[i] for i in range(len(calls))]


def _left(budget: Budget) -> float | None:
    """Return what the budget still allows, or None without a limit."""
    return None if budget.limit_usd is None else max(0.0, budget.limit_usd - budget.spent_usd)


def _failed(kind: str, error: str) -> ChatResult:
    return ChatResult(None, None, 0, 0, 0.0, 0, error_kind=kind, error=error)


def _partitions(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else [""]


def waits_for_batches(settings: Settings, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Wrap an LLM asset's body: while its batch jobs are open it yields an observation naming them (and the
    empty check outputs) instead of a materialization; once they have ended its materialization carries the
    jobs' figures (submitted, completed, failed, expired, cost at batch price, turnaround)."""
    if not any(e.mode == "batch" for e in settings.endpoints):
        return fn
    prices = batch_prices(settings)

    @functools.wraps(fn)
    def body(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
        llm: LLMResource = kwargs["llm"]
        figures = _job_figures(llm, context)
        token = _STEP.set(_Step(prices, _waited_requests(llm, context)))
        try:
            for event in fn(context, *args, **kwargs):
                yield _with_figures(context, event, figures)
            if figures:
                _served(llm, context)
        except BatchesPending as pending:
            yield from _pending_events(context, pending)
        finally:
            _STEP.reset(token)

    return body


def _job_figures(llm: LLMResource, context: dg.AssetExecutionContext) -> dict[str, dict[str, Any]]:
    """Return per partition the metadata of the batch jobs it waited on (none: empty)."""
    path = store_path(llm.cache_path)
    if not path.is_file():
        return {}
    store = JobStore(path, private=llm.private_files)
    try:
        asset = context.asset_key.to_user_string()
        return {p: job_metadata(jobs) for p in _partitions(context) if (jobs := store.waiting_jobs(asset, p))}
    finally:
        store.close()


def _waited_requests(llm: LLMResource, context: dg.AssetExecutionContext) -> frozenset[str]:
    """Return the request keys of the jobs this step's partitions wait on (those its step has not run on yet)."""
    path = store_path(llm.cache_path)
    if not path.is_file():
        return frozenset()
    store = JobStore(path, private=llm.private_files)
    try:
        asset = context.asset_key.to_user_string()
        jobs = {j.job_key for p in _partitions(context) for j in store.waiting_jobs(asset, p, unserved=True)}
        return frozenset(key for job in jobs for key in store.job_keys_of(job))
    finally:
        store.close()


def _served(llm: LLMResource, context: dg.AssetExecutionContext) -> None:
    """Record that this step's partitions have used their jobs' answers: the sensor stops requesting their run."""
    store = JobStore(store_path(llm.cache_path), private=llm.private_files)
    try:
        for partition in _partitions(context):
            store.served(context.asset_key.to_user_string(), partition)
    finally:
        store.close()


def job_metadata(jobs: Sequence[Job]) -> dict[str, Any]:
    """Return metadata of batch jobs: a table of each job's figures, and their totals."""
    rows = [job.summary() for job in jobs]
    return {
        "batch_jobs": dg.MetadataValue.md(_jobs_table(rows)),
        "batch_submitted": dg.MetadataValue.int(sum(j.total for j in jobs)),
        "batch_completed": dg.MetadataValue.int(sum(j.completed for j in jobs)),
        "batch_failed": dg.MetadataValue.int(sum(j.failed for j in jobs)),
        "batch_expired": dg.MetadataValue.int(sum(j.expired for j in jobs)),
        "batch_cost_usd": dg.MetadataValue.float(round(sum(j.cost_usd for j in jobs), 6)),
    }


def _jobs_table(rows: list[dict[str, Any]]) -> str:
    columns = ["job", "provider_id", "endpoint", "attempt", "status", "submitted", "completed", "failed", "expired",
               "cost_usd", "turnaround_s"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _with_figures(context: dg.AssetExecutionContext, event: Any, figures: dict[str, dict[str, Any]]) -> Any:
    if not figures or not isinstance(event, dg.MaterializeResult):
        return event
    if len(figures) == 1 and context.has_partition_key and event.metadata is not None:
        (extra,) = figures.values()
        return dg.MaterializeResult(asset_key=event.asset_key, metadata={**event.metadata, **extra},
                                    check_results=event.check_results, data_version=event.data_version,
                                    value=event.value, tags=event.tags)  # fmt: skip
    for partition, extra in figures.items():
        context.add_asset_metadata(extra, partition_key=partition)
    return event


def _pending_events(context: dg.AssetExecutionContext, pending: BatchesPending) -> Iterator[Any]:
    context.log.info(f"waiting for batch jobs; the {SENSOR_NAME} sensor runs this step again when they end: {pending}")
    metadata = job_metadata(pending.jobs)
    for partition in _partitions(context):
        yield dg.AssetObservation(asset_key=context.asset_key, partition=partition or None, metadata=metadata)
    for name in context.assets_def.check_specs_by_output_name:
        yield dg.Output(None, output_name=name)


def batch_prices(settings: Settings) -> Prices:
    """Return the batch price per million (input, output) tokens of an (endpoint, API model)."""
    discounts = {e.name: e.batch_discount for e in settings.endpoints}
    models = [*settings.generators, *settings.panel]
    table = {(m.endpoint, m.model): m.batch_prices(discounts[m.endpoint]) for m in models}
    return lambda endpoint, model: table.get((endpoint, model), (0.0, 0.0))


def batch_sensors(
    settings: Settings, job_name: str, assets: Sequence[dg.AssetsDefinition]
) -> list[dg.SensorDefinition]:
    """Return the ``llm_batches`` sensor (running by default) when an endpoint is in batch mode, else nothing."""
    intervals = [e.batch_poll_interval_s for e in settings.endpoints if e.mode == "batch"]
    if not intervals:
        return []
    prices = batch_prices(settings)

    @dg.sensor(name=SENSOR_NAME, job_name=job_name, minimum_interval_seconds=min(intervals),
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Polls open LLM batch jobs, collects their answers into the request cache, resubmits "
                           "failed lines, and runs the waiting partitions (and downstream) again.")  # fmt: skip
    def llm_batches(context: dg.SensorEvaluationContext, llm: LLMResource) -> dg.SensorResult | dg.SkipReason:
        queue = open_queue(llm, prices=prices, log=context.log.info)
        try:
            queue.poll()
            requests = _run_requests(queue.store, assets)
            open_jobs = len(queue.store.jobs(states=["submitting", "open"]))
        finally:
            close_queue(queue)
        if not requests:
            return dg.SkipReason(f"{open_jobs} batch job(s) open; no partition is ready")
        return dg.SensorResult(run_requests=requests)

    return [llm_batches]


def _run_requests(store: JobStore, assets: Sequence[dg.AssetsDefinition]) -> list[dg.RunRequest]:
    """Return one run per partition whose jobs have all ended: its waiting assets and everything downstream.

    A partition is requested at every tick until its step has run on the answers (``JobStore.served``); the run key
    names the partition and its jobs, so Dagster launches it once, and a tick lost between evaluation and launch
    (a daemon stopped in between) is requested again at the next.
    """
    by_partition: dict[str, set[dg.AssetKey]] = defaultdict(set)
    jobs: dict[str, set[str]] = defaultdict(set)
    for asset, partition, job_keys in store.ready_waiters():
        selection = dg.AssetSelection.assets(dg.AssetKey.from_user_string(asset)).downstream()
        by_partition[partition] |= set(selection.resolve(assets))
        jobs[partition] |= set(job_keys)
    return [
        dg.RunRequest(
            run_key=f"{partition}:{'+'.join(sorted(jobs[partition]))[:200]}",
            partition_key=partition or None,
            asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
            tags={"pref_assets/batch_jobs": ",".join(sorted(jobs[partition]))[:1000]},
        )
        for partition, keys in by_partition.items()
    ]


def batches_command(settings: Settings, action: str, job_key: str | None = None) -> str:
    """Run ``pref-assets batches ACTION``: ``list`` the jobs, ``poll`` them now (collect ended ones, resubmit
    failed lines), ``cancel`` one, or ``resubmit`` the failed lines of one job (or of all)."""
    keys = {e.name: os.environ.get(e.api_key_env, "") for e in settings.endpoints if e.api_key_env}
    llm = LLMResource(endpoints=settings.endpoints, api_keys={name: key for name, key in keys.items() if key},
                      cache_path=settings.cache_path(), private_files=settings.private_files)  # fmt: skip
    queue = open_queue(llm, prices=batch_prices(settings), log=print)
    try:
        if action == "list":
            return _jobs_listing(queue.store)
        if action == "poll":
            ended = queue.poll()
            still = len(queue.store.jobs(states=["submitting", "open"]))
            return f"{len(ended)} job(s) ended and collected; {still} open"
        if job_key is None and action == "cancel":
            raise ValueError("name the job to cancel (pref-assets batches list shows them)")
        if action == "cancel":
            return queue.cancel(str(job_key))
        count = queue.store.retry_failed(job_key)
        made = queue.resubmit()
        return f"{count} failed request(s) resubmitted in {len(made)} job(s): {', '.join(made) or '-'}"
    finally:
        close_queue(queue)


def _jobs_listing(store: JobStore) -> str:
    jobs = store.jobs()
    if not jobs:
        return f"no batch jobs in {store.path}"
    rows = [job.summary() | {"waiting": ", ".join(f"{a}/{p}" for a, p in store.waiters_of(job.job_key))}
            for job in jobs]  # fmt: skip
    columns = ["job", "provider_id", "endpoint", "state", "status", "attempt", "submitted", "completed", "failed",
               "expired", "cost_usd", "turnaround_s", "waiting"]  # fmt: skip
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    lines += [f"  {r['job']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(lines)
