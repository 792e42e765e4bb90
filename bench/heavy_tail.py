"""Benchmark: long-tailed latencies, generators and judge on separate endpoints, one partition end to end.

    .venv/bin/python bench/heavy_tail.py [--prompts 400] [--concurrency 50] [--median 1] [--p99 10]
    .venv/bin/python bench/heavy_tail.py --base-url URL [--judge-base-url URL] --model NAME   # an external server

Two fake servers draw each request's latency from a log-normal distribution (median 1 s, 99th percentile
10 s by default). The two generators use endpoint ``gen`` (one server), the judge endpoint ``judge`` (the
other); each endpoint has its own ``max_concurrency``. The whole job runs in process for one partition and
every HTTP exchange is timed on the client side (start and end of ``ChatClient._exchange``).

Printed per endpoint: requests, their summed latency, the highest in flight, and the utilization
(time-averaged in-flight / max_concurrency) over two windows: while the endpoint had requests waiting to be sent
(from its first request's start to its last request's start; target >= 85%), and over its whole active span
(to the last answer, the drain of the slowest requests included).

Printed for the run: the job wall and the LLM steps' time against
- the ideal the task states: the sum of latencies / concurrency per stage, added over the two stages;
- the greedy schedule of the measured latencies in the order they were sent, with the stage barrier the job has
  (all generations, then all judgements): what a client that never leaves a slot idle would take;
- the same greedy schedule without the barrier: a prompt's judgement starts once its two answers are done.
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from engine import PARTITION, bench_models, describe_steps, run_job, write_prompts

from pref_assets.clients.llm import ChatClient, ChatRequest
from pref_assets.settings import (
    CacheSettings,
    EndpointSettings,
    Settings,
    SourceSettings,
)
from pref_assets.testing.fake_openai import run_fake_openai

MODEL = "fake-model"
UTILIZATION_TARGET = 0.85


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange as the client saw it."""

    url: str
    start: float
    end: float
    ok: bool

    @property
    def seconds(self) -> float:
        """Return how long the exchange took."""
        return self.end - self.start


class Recorder:
    """Times every ``ChatClient._exchange`` of this process while installed."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._original: Any = None

    def __enter__(self) -> Recorder:
        original = self._original = ChatClient._exchange
        exchanges = self.exchanges

        async def timed(client: ChatClient, request: ChatRequest) -> Any:
            start = time.perf_counter()
            reply = await original(client, request)
            exchanges.append(Exchange(str(client._url), start, time.perf_counter(), reply.error_kind is None))
            return reply

        ChatClient._exchange = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        ChatClient._exchange = self._original  # type: ignore[method-assign]


def settings_for(
    gen_url: str, judge_url: str, prompts: Path, n: int, concurrency: int, store: Path, model: str = MODEL
) -> Settings:
    """Return settings with the generators on endpoint ``gen`` and the judge on endpoint ``judge``."""
    endpoints = [
        EndpointSettings(name=name, base_url=url, max_concurrency=concurrency, structured_output="json_schema")
        for name, url in (("gen", gen_url), ("judge", judge_url))
    ]
    generators, judge = bench_models(model, "gen", "judge")
    return Settings(
        storage_dir=str(store),
        batch_size=n,
        source=SourceSettings(kind="files", paths=[str(prompts)], limit=n),
        endpoints=endpoints,
        generators=generators,
        judge=judge,
        cache=CacheSettings(enabled=False),
    )


# ---------------------------------------------------------------- figures


def in_flight_integral(exchanges: Sequence[Exchange], lo: float, hi: float) -> float:
    """Return the integral of the number of exchanges in flight over [lo, hi] (request-seconds)."""
    return sum(max(0.0, min(e.end, hi) - max(e.start, lo)) for e in exchanges)


def max_in_flight(exchanges: Sequence[Exchange]) -> int:
    """Return the most exchanges in flight at once."""
    events = sorted([(e.start, 1) for e in exchanges] + [(e.end, -1) for e in exchanges], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def greedy(durations: Sequence[float], releases: Sequence[float], slots: int) -> list[float]:
    """Return each job's end when jobs go, in order of release (ties in the given order), to the first free slot."""
    free = [0.0] * slots
    ends = [0.0] * len(durations)
    for i in sorted(range(len(durations)), key=lambda k: (releases[k], k)):
        start = max(heapq.heappop(free), releases[i])
        ends[i] = start + durations[i]
        heapq.heappush(free, ends[i])
    return ends


@dataclass(frozen=True)
class EndpointFigures:
    """One endpoint's figures over the run."""

    name: str
    requests: int
    failed: int
    latency_sum: float
    latency_max: float
    peak: int
    saturated_s: float
    saturated_util: float
    active_s: float
    active_util: float

    def line(self, concurrency: int) -> str:
        """Return the figures as one printed line."""
        met = "yes" if self.saturated_util >= UTILIZATION_TARGET else "NO"
        return (
            f"endpoint {self.name}: requests={self.requests} failed={self.failed} latency sum={self.latency_sum:.1f}s "
            f"max={self.latency_max:.2f}s max_in_flight={self.peak}/{concurrency}; utilization while requests "
            f"waited ({self.saturated_s:.1f}s) {self.saturated_util:.1%} (target >= {UTILIZATION_TARGET:.0%}: {met}); "
            f"over the active span ({self.active_s:.1f}s, drain included) {self.active_util:.1%}"
        )


def endpoint_figures(name: str, exchanges: Sequence[Exchange], concurrency: int) -> EndpointFigures:
    """Return the utilization figures of one endpoint's exchanges."""
    first = min(e.start for e in exchanges)
    last_start = max(e.start for e in exchanges)
    last_end = max(e.end for e in exchanges)
    saturated = last_start - first
    active = last_end - first
    return EndpointFigures(
        name=name,
        requests=len(exchanges),
        failed=sum(not e.ok for e in exchanges),
        latency_sum=sum(e.seconds for e in exchanges),
        latency_max=max(e.seconds for e in exchanges),
        peak=max_in_flight(exchanges),
        saturated_s=saturated,
        saturated_util=in_flight_integral(exchanges, first, last_start) / (concurrency * saturated) if saturated else 1,
        active_s=active,
        active_util=in_flight_integral(exchanges, first, last_end) / (concurrency * active),
    )


def ideals(gens: Sequence[Exchange], judges: Sequence[Exchange], concurrency: int) -> dict[str, float]:
    """Return the ideal walls of the two LLM stages from the measured latencies (see the module docstring)."""
    gen_d = [e.seconds for e in sorted(gens, key=lambda e: e.start)]
    judge_d = [e.seconds for e in sorted(judges, key=lambda e: e.start)]
    stage_sum = sum(gen_d) / concurrency + sum(judge_d) / concurrency
    bound = max(sum(gen_d) / concurrency, max(gen_d)) + max(sum(judge_d) / concurrency, max(judge_d))
    gen_ends = greedy(gen_d, [0.0] * len(gen_d), concurrency)
    barrier = max(gen_ends) + max(greedy(judge_d, [0.0] * len(judge_d), concurrency))
    # Generations go prompt by prompt (two per prompt), judgements in prompt order: judgement k waits for 2k, 2k+1.
    per_prompt = len(gen_d) // max(1, len(judge_d))
    ready = [max(gen_ends[k * per_prompt : (k + 1) * per_prompt], default=0.0) for k in range(len(judge_d))]
    pipelined = max(max(gen_ends), max(greedy(judge_d, ready, concurrency)))
    return {"stage_sum": stage_sum, "bound": bound, "barrier": barrier, "pipelined": pipelined}


def exchanges_by_endpoint(exchanges: Sequence[Exchange], urls: dict[str, str]) -> dict[str, list[Exchange]]:
    """Return the exchanges of each endpoint by its URL; when both share one, the judge's are the exchanges that
    started after the last generation was sent (the job's stage barrier)."""
    if urls["gen"] != urls["judge"]:
        return {name: [e for e in exchanges if e.url.startswith(url)] for name, url in urls.items()}
    ordered = sorted(exchanges, key=lambda e: e.start)
    gaps = [(b.start - a.start, i + 1) for i, (a, b) in enumerate(pairwise(ordered))]
    cut = max(gaps)[1] if gaps else len(ordered)  # the longest pause between two sends: the grouped step
    return {"gen": ordered[:cut], "judge": ordered[cut:]}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50, help="max_concurrency of each endpoint")
    parser.add_argument("--median", type=float, default=1.0, help="median latency, seconds")
    parser.add_argument("--p99", type=float, default=10.0, help="99th percentile latency, seconds")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server for both endpoints")
    parser.add_argument("--judge-base-url", default=None, help="the judge's server (default: --base-url)")
    parser.add_argument("--model", default=MODEL, help="the model every generator and the judge ask")
    args = parser.parse_args()
    n, c = args.prompts, args.concurrency
    knobs = {"latency": args.median, "latency_dist": "lognormal", "latency_p99": args.p99}
    with tempfile.TemporaryDirectory(prefix="pref-heavy-") as tmp, ExitStack() as stack:
        if args.base_url:  # an external server: its own latencies, no server-side counters
            urls = {"gen": args.base_url, "judge": args.judge_base_url or args.base_url}
            servers: dict[str, Any] = {}
        else:
            fakes = (("gen", 1), ("judge", 2))
            servers = {name: stack.enter_context(run_fake_openai(seed=seed, **knobs)) for name, seed in fakes}
            urls = {name: server.base_url for name, server in servers.items()}
        recorder = stack.enter_context(Recorder())
        work = Path(tmp)
        prompts = write_prompts(work / "prompts.jsonl", n)
        settings = settings_for(urls["gen"], urls["judge"], prompts, n, c, work / "store", args.model)
        run = run_job(settings)
        server_stats = {name: server.stats() for name, server in servers.items()}
    if urls["gen"] == urls["judge"]:
        print("generators and judge on one server: the endpoints are told apart by the order of the stages")
    by_endpoint = exchanges_by_endpoint(recorder.exchanges, urls)
    print(
        f"heavy-tail: {n} prompts, partition {PARTITION}, latency log-normal median {args.median:g}s "
        f"p99 {args.p99:g}s, max_concurrency {c} per endpoint (gen: 2 generators, judge: the judge)"
    )
    print(
        f"job ok={run.success} wall={run.wall_s:.2f}s llm_steps={run.llm_s:.2f}s "
        f"dpo_pairs rows={run.rows('dpo_pairs')} {describe_steps(run)}"
    )
    for name, exchanges in by_endpoint.items():
        figures = endpoint_figures(name, exchanges, c)
        stats = server_stats.get(name)
        seen = f"server saw requests={stats['requests']} max_in_flight={stats['max_in_flight']}" if stats else ""
        print(f"{figures.line(c)}; {seen or 'server counters: none (external server)'}")
    gens, judges = by_endpoint["gen"], by_endpoint["judge"]
    ideal = ideals(gens, judges, c)
    span = (max(e.end for e in gens) - min(e.start for e in gens)) + (
        max(e.end for e in judges) - min(e.start for e in judges)
    )
    gap = min(e.start for e in judges) - max(e.end for e in gens)
    print(
        f"LLM request spans (gen + judge) {span:.2f}s; between the last answer and the first judgement {gap:.2f}s "
        f"(the grouped step and step starts)"
    )
    per_stage = " + ".join(f"{name} {sum(e.seconds for e in ex) / c:.2f}s" for name, ex in by_endpoint.items())
    print(f"ideal, sum of latencies / concurrency per stage: {per_stage} = {ideal['stage_sum']:.2f}s")
    print(f"ideal with each stage at least its slowest request: {ideal['bound']:.2f}s")
    print(f"greedy schedule of these latencies, stage barrier: {ideal['barrier']:.2f}s")
    print(
        f"greedy schedule, judge per prompt once its answers are done: {ideal['pipelined']:.2f}s (below the stage "
        "sum: the two endpoints work at the same time)"
    )
    print(
        f"ratios: LLM steps / stage-sum ideal {run.llm_s / ideal['stage_sum']:.2f}x, job wall / stage-sum ideal "
        f"{run.wall_s / ideal['stage_sum']:.2f}x, request spans / barrier greedy {span / ideal['barrier']:.2f}x, "
        f"job wall / pipelined greedy {run.wall_s / ideal['pipelined']:.2f}x"
    )


if __name__ == "__main__":
    main()
