"""Run many calls across endpoints concurrently; one client (and connection pool) per endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from pref_assets.clients.llm import CIRCUIT_OPEN, ChatClient, ChatRequest, ChatResult
from pref_assets.core.calls import Call
from pref_assets.core.cost import cost_usd

ClientFactory = Callable[[str], ChatClient]
Log = Callable[[str], None]


class EndpointParkedError(RuntimeError):
    """An endpoint failed so often in a row that the remaining calls were not sent."""


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million input and output tokens, per (endpoint, model); unknown models cost nothing."""

    per_million: Mapping[tuple[str, str], tuple[float, float]]

    def cost(self, call: Call, result: ChatResult) -> float:
        """Return what a call cost (cached answers cost nothing)."""
        if result.cached:
            return 0.0
        price_in, price_out = self.per_million.get((call.endpoint, call.model), (0.0, 0.0))
        return cost_usd(result.prompt_tokens, result.completion_tokens, price_in, price_out)


@dataclass
class Budget:
    """Stops new requests once ``limit_usd`` is spent; None means no limit."""

    prices: Prices
    limit_usd: float | None = None
    spent_usd: float = 0.0

    def admit(self) -> str | None:
        """Return why no new request may be sent, or None while budget remains."""
        if self.limit_usd is not None and self.spent_usd >= self.limit_usd:
            return f"budget of {self.limit_usd} USD spent"
        return None


def run_calls(
    calls: Sequence[Call],
    client_for: ClientFactory,
    *,
    budget: Budget | None = None,
    log: Log | None = None,
    interval: float = 15.0,
    slow_turn: float = 60.0,
) -> list[ChatResult]:
    """Return one result per call, in order. Blocks; failures are results.

    Logs progress every ``interval`` seconds, and once per endpoint when its requests wait longer than
    ``slow_turn`` seconds for their turn; raises EndpointParkedError if an endpoint's circuit opened.
    """
    if not calls:
        return []
    progress = _Progress(len(calls), log, interval, slow_turn)
    results = asyncio.run(_run(calls, client_for, budget or Budget(Prices({})), progress))
    _raise_if_parked(calls, results)
    return results


async def _run(
    calls: Sequence[Call], client_for: ClientFactory, budget: Budget, progress: _Progress
) -> list[ChatResult]:
    clients = {name: client_for(name) for name in dict.fromkeys(c.endpoint for c in calls)}
    try:
        jobs = [progress.track(_call(clients[c.endpoint], c, budget)) for c in calls]
        reporter = asyncio.create_task(progress.report_every(clients))
        try:
            return list(await asyncio.gather(*jobs))
        finally:
            reporter.cancel()
            _report_dropped_fields(clients, progress.log)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients.values()))


async def _call(client: ChatClient, call: Call, budget: Budget) -> ChatResult:
    result = await client.complete(to_request(call), admit=budget.admit)
    budget.spent_usd += budget.prices.cost(call, result)
    return result


class _Progress:
    def __init__(self, total: int, log: Log | None, interval: float, slow_turn: float) -> None:
        self.total, self.done, self.log, self.interval = total, 0, log, interval
        self.slow_turn = slow_turn
        self.warned: set[str] = set()
        self.started = time.monotonic()

    async def track(self, job: Awaitable[ChatResult]) -> ChatResult:
        result = await job
        self.done += 1
        return result

    async def report_every(self, clients: Mapping[str, ChatClient]) -> None:
        while self.log is not None:
            await asyncio.sleep(self.interval)
            self.log(self.line())
            self.warn_slow_turns(clients)

    def warn_slow_turns(self, clients: Mapping[str, ChatClient]) -> None:
        """Say once per endpoint that its requests wait long for their turn: the endpoint is the bottleneck."""
        for name, client in clients.items():
            if self.log is None or name in self.warned or client.longest_wait <= self.slow_turn:
                continue
            self.warned.add(name)
            rate = self.done / max(time.monotonic() - self.started, 1e-9) * 60
            self.log(
                f"endpoint {name} is the bottleneck: requests waited up to {client.longest_wait:.0f} s for their "
                f"turn; {rate:.1f} calls/min so far. {client.bottleneck_note}".rstrip()
            )

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        if not self.done:
            return f"0/{self.total} calls done, waiting {elapsed:.0f} s for the first answer"
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{self.done}/{self.total} calls done, {rate:.2f}/s, ETA {eta:.0f} s"


def _report_dropped_fields(clients: Mapping[str, ChatClient], log: Log | None) -> None:
    for name, client in clients.items():
        for field, message in client.dropped.items():
            if log is not None:
                log(
                    f"endpoint {name} rejected the request field {field} ({message}); its requests were sent without "
                    f"it. {_ADVICE.get(field, '')}".rstrip()
                )


_ADVICE = {"response_format": "Set the endpoint's structured_output to the server's flavour, or to none."}


def _raise_if_parked(calls: Sequence[Call], results: Sequence[ChatResult]) -> None:
    parked = sorted({c.endpoint for c, r in zip(calls, results, strict=True) if r.error_kind == CIRCUIT_OPEN})
    if not parked:
        return
    last = next(r.error for r in reversed(results) if r.error_kind == CIRCUIT_OPEN)
    raise EndpointParkedError(
        f"endpoint(s) {', '.join(parked)}: {last}; {sum(r.error_kind == CIRCUIT_OPEN for r in results)} calls "
        "not sent. Completed answers are cached; rerun when the endpoint is back."
    )


def to_request(call: Call) -> ChatRequest:
    """Return the HTTP-level request of a call."""
    return ChatRequest(call.model, list(call.messages), dict(call.params), call.response_format)
