"""Benchmark of the request path: the pipeline against the fake OpenAI-compatible server.

    .venv/bin/python bench/engine.py [--scenario A|B|C|overhead|all] [--prompts N] [--repeat K]
    .venv/bin/python bench/engine.py --base-url URL [--api-key-env NAME] [--model NAME] [--structured-output F]

A         the whole job on one partition of N prompts (2 generators + judge, 0.5 s latency, concurrency
          100, request cache off): job wall and LLM-step time against the endpoint-bound limit 3*N*L/C,
          and distilabel 1.5.3 on the same prompts and server when .venvs/distilabel exists.
B         an RPM cap on the server (429 + Retry-After beyond it): achieved RPM / cap, 429s, failed rows.
C         `dagster asset materialize` killed with SIGKILL halfway through the generations, then rerun on
          the same storage (request cache on): requests re-sent whose answer the run had received, rows lost.
overhead  ChatClient/run_calls at 0 latency, concurrency 64 and 256, against a raw asyncio HTTP/1.1
          client on the same server: requests per second.

Every scenario prints its figures; a table with the targets closes the run.

With --base-url the scenarios run against that OpenAI-compatible server instead of the fake one. What needs the
fake server (its latency knob, RPM cap, counters at /_stats) degrades: A has no 3*N*L/C limit (the server's
latency is unknown) and measures against the raw asyncio client; requests and max in flight come from the client;
distilabel is not run. B and C are skipped (they need the server's RPM cap and its counters). overhead compares
ours with the raw client on that server, without the 2,000 req/s target (it assumes a 0-latency server).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import polars as pl
import yaml

from pref_assets.clients.cache import RequestCache
from pref_assets.clients.llm import ChatClient
from pref_assets.clients.runner import run_calls
from pref_assets.core.calls import Call
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import (
    CacheSettings,
    EndpointSettings,
    JudgeSettings,
    ModelSettings,
    Settings,
    SourceSettings,
)
from pref_assets.sources.embedded import embedded_path
from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

ROOT = Path(__file__).resolve().parents[1]
DISTILABEL_PYTHON = ROOT / ".venvs" / "distilabel" / "bin" / "python"
DISTILABEL_SCRIPT = ROOT / "bench" / "distilabel_pipeline.py"
PARTITION = "batch-00000"
ASSETS = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records")
LLM_STEPS = ("generations_by_model", "ratings")
ENDPOINT = "fake"
MODEL = "fake-model"
CONCURRENCY = 100
LATENCY_A = 0.5
LATENCY_B = 0.2
LATENCY_C = 1.5
REQUESTS_PER_PROMPT = 3
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Target:
    """The server the scenarios run against: the fake one (``base_url`` None) or any OpenAI-compatible one."""

    base_url: str | None = None
    api_key_env: str | None = None
    model: str = MODEL
    structured_output: str = "json_schema"

    @property
    def external(self) -> bool:
        """Return whether the scenarios run against a server other than the fake one."""
        return self.base_url is not None

    def api_key(self) -> str | None:
        """Return the API key from the environment variable ``api_key_env`` names, if any."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


FAKE = Target()


@dataclass(frozen=True)
class ExternalServer:
    """A server the benchmark did not start: no counters, no reset."""

    base_url: str

    def stats(self) -> dict[str, Any] | None:
        """Return None: only the fake server has counters."""
        return None

    def reset(self) -> None:
        """Do nothing: only the fake server has counters."""


Server = FakeServer | ExternalServer


@contextmanager
def serve(target: Target, **knobs: Any) -> Iterator[Server]:
    """Yield the fake server with ``knobs``, or the target's server (the knobs are the fake server's only)."""
    if target.base_url is None:
        with run_fake_openai(**knobs) as server:
            yield server
        return
    if knobs:
        print(f"note: against {target.base_url} the fake-server knobs {knobs} do not apply")
    yield ExternalServer(target.base_url.rstrip("/"))


@dataclass(frozen=True)
class Figure:
    """One line of the closing table."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class JobRun:
    """One in-process run of the job: wall time, step durations, row statuses per asset."""

    success: bool
    wall_s: float
    cpu_s: float
    steps_s: dict[str, float]
    statuses: dict[str, dict[str, int]]

    @property
    def llm_s(self) -> float:
        """Return the summed duration of the steps that call the LLM endpoint."""
        return sum(self.steps_s.get(step, 0.0) for step in LLM_STEPS)

    def count(self, asset: str, status: str) -> int:
        """Return how many rows of ``asset`` have ``status``."""
        return self.statuses.get(asset, {}).get(status, 0)

    def rows(self, asset: str) -> int:
        """Return how many rows ``asset`` holds."""
        return sum(self.statuses.get(asset, {}).values())


# ---------------------------------------------------------------- shared helpers


def write_prompts(path: Path, n: int) -> Path:
    """Write ``n`` distinct prompts, none a near-duplicate of another: the embedded set, then prompts asking about
    eight words drawn (seeded by the prompt's number) from the embedded set's vocabulary."""
    base = [json.loads(line) for line in embedded_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    words = sorted({w for row in base for w in re.findall(r"[a-z]{5,}", row["instruction"].lower())})
    rows = []
    for i in range(n):
        row = dict(base[i % len(base)])
        if i >= len(base):
            drawn = random.Random(i).sample(words, 8)
            row["instruction"] = f"Write one paragraph that connects {', '.join(drawn[:-1])} and {drawn[-1]}."
        rows.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def bench_models(
    model: str, gen_endpoint: str, judge_endpoint: str | None = None
) -> tuple[list[ModelSettings], JudgeSettings]:
    """Return the benchmarks' models: two generators (temperature 0.2 and 1.0, 64 tokens) on ``gen_endpoint`` and
    the judge (temperature 0, 384 tokens) on ``judge_endpoint`` (the same endpoint when not given)."""
    generators = [
        ModelSettings(name=f"gen-{t}", endpoint=gen_endpoint, model=model, params={"temperature": t, "max_tokens": 64})
        for t in (0.2, 1.0)
    ]
    judge = JudgeSettings(name="judge", endpoint=judge_endpoint or gen_endpoint, model=model,
                          params={"temperature": 0.0, "max_tokens": 384})  # fmt: skip
    return generators, judge


def pipeline_settings(
    base_url: str, prompts: Path, n: int, store: Path, *, cache: bool, target: Target = FAKE
) -> Settings:
    """Return settings for one partition of ``n`` prompts, every model on one endpoint at ``base_url``."""
    endpoint = EndpointSettings(
        name=ENDPOINT,
        base_url=base_url,
        api_key_env=target.api_key_env,
        max_concurrency=CONCURRENCY,
        structured_output=target.structured_output,
    )
    generators, judge = bench_models(target.model, ENDPOINT)
    source = SourceSettings(kind="files", paths=[str(prompts)], limit=n)
    return Settings(
        storage_dir=str(store),
        batch_size=n,
        source=source,
        endpoints=[endpoint],
        generators=generators,
        judge=judge,
        cache=CacheSettings(enabled=cache),
    )


def run_job(settings: Settings) -> JobRun:
    """Run all six assets for the partition in process and collect the figures."""
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()  # the deployment's instance exists before any run
    # As pref_assets.definitions does once a code location has loaded: what exists before the run is long-lived.
    gc.collect()
    gc.freeze()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = job.execute_in_process(
        run_config=QUIET_CONSOLE, partition_key=PARTITION, instance=instance, raise_on_error=False
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    steps = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key
    }
    return JobRun(result.success, wall, cpu, steps, read_statuses(Path(settings.storage_dir)))


def read_statuses(store: Path) -> dict[str, dict[str, int]]:
    """Return the row-status counts of every materialized asset of the partition."""
    counts = {}
    for asset in ASSETS:
        path = store / asset / f"{PARTITION}.parquet"
        if path.is_file():
            column = pl.read_parquet(path, columns=["status"])["status"]
            counts[asset] = {str(k): int(v) for k, v in column.value_counts().iter_rows()}
    return counts


def request_counts(stats: dict[str, Any] | None, run: JobRun) -> str:
    """Return the server's request count and max in flight, or the client's count of LLM rows without counters."""
    if stats is None:
        rows = sum(run.rows(step) for step in LLM_STEPS)
        return f"llm_rows={rows} (no server counters)"
    return f"requests={stats['requests']} max_in_flight={stats['max_in_flight']}"


def ok_200(stats: dict[str, Any]) -> int:
    """Return how many requests the server answered with 200."""
    return int(stats["by_status"].get("200", 0))


def describe_steps(run: JobRun) -> str:
    """Return the step durations as one line."""
    return " ".join(f"{step}={seconds:.2f}s" for step, seconds in run.steps_s.items())


# ---------------------------------------------------------------- scenario A and distilabel


@dataclass(frozen=True)
class Peer:
    """One distilabel run: its own wall (pipeline.run), the process wall, outputs and server counters."""

    wall_s: float
    process_s: float
    outputs: int
    stats: dict[str, Any]


def scenario_a(n: int, repeat: int, work: Path, target: Target = FAKE) -> list[Figure]:
    """Run the job (and distilabel, side by side) ``repeat`` times on one server."""
    prompts = write_prompts(work / "prompts_a.jsonl", n)
    # the endpoint-bound limit needs the latency, known only for the fake server
    limit = None if target.external else REQUESTS_PER_PROMPT * n * LATENCY_A / CONCURRENCY
    ours: list[JobRun] = []
    peers: list[Peer] = []
    floors: list[float] = []
    with serve(target, latency=LATENCY_A) as server:
        for i in range(repeat):
            server.reset()
            settings = pipeline_settings(server.base_url, prompts, n, work / f"a{i}", cache=False, target=target)
            run = run_job(settings)
            ours.append(run)
            print(
                f"A[{i}] ok={run.success} job={run.wall_s:.2f}s llm={run.llm_s:.2f}s "
                f"limit={'n/a' if limit is None else f'{limit:.2f}s'} "
                f"outside_llm_steps={run.wall_s - run.llm_s:.2f}s process_cpu={run.cpu_s:.2f}s "
                f"{request_counts(server.stats(), run)} {describe_steps(run)}"
            )
            floors.append(raw_floor(server.base_url, n, target))
            print(f"A[{i}] raw asyncio client, the same two waves of requests: {floors[-1]:.2f}s")
            if isinstance(server, FakeServer) and DISTILABEL_PYTHON.exists():
                peers.append(run_distilabel(server, prompts))
                peer = peers[-1]
                print(
                    f"A[{i}] distilabel wall={peer.wall_s:.2f}s process={peer.process_s:.2f}s "
                    f"outputs={peer.outputs} requests={peer.stats['requests']} "
                    f"max_in_flight={peer.stats['max_in_flight']} ratio={peer.wall_s / run.wall_s:.2f}x"
                )
    return a_figures(ours, peers, floors, limit, n)


def raw_floor(base_url: str, n: int, target: Target = FAKE) -> float:
    """Time a plain asyncio client sending the job's requests: 2n generations, then n judgements, at the same
    concurrency on the same server: the endpoint's practical floor in this run."""
    started = time.perf_counter()
    for requests in (2 * n, n):
        send_raw(base_url, requests, CONCURRENCY, target)
    return time.perf_counter() - started


def run_distilabel(server: FakeServer, prompts: Path) -> Peer:
    """Run bench/distilabel_pipeline.py in its own venv against ``server`` (counters reset first)."""
    server.reset()
    command = [
        str(DISTILABEL_PYTHON),
        str(DISTILABEL_SCRIPT),
        "--base-url",
        server.base_url,
        "--prompts-file",
        str(prompts),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"distilabel run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(line.removeprefix("RESULT "))
    return Peer(float(result["wall_s"]), process_s, int(result["outputs"]), server.stats())


def a_figures(ours: list[JobRun], peers: list[Peer], floors: list[float], limit: float | None, n: int) -> list[Figure]:
    """Return the medians of scenario A and of the side-by-side ratio."""
    job = statistics.median(r.wall_s for r in ours)
    llm = statistics.median(r.llm_s for r in ours)
    complete = all(r.success and r.rows("dpo_pairs") == n for r in ours)
    raw = Figure(
        "A raw asyncio client, same requests",
        f"{statistics.median(floors):.2f}s; our LLM steps / raw "
        f"{statistics.median(r.llm_s / f for r, f in zip(ours, floors, strict=True)):.2f}x",
    )
    if limit is None:
        figures = [
            Figure(f"A job wall (median of {len(ours)})", f"{job:.2f}s (no limit: the server's latency is unknown)"),
            Figure("A LLM steps (gen + ratings)", f"{llm:.2f}s"),
            Figure("A runs complete", f"{complete} ({n} pair rows each)"),
            raw,
            Figure("A distilabel / ours", "skipped: distilabel runs only against the fake server"),
        ]
        return figures
    figures = [
        Figure(
            f"A job wall (median of {len(ours)})",
            f"{job:.2f}s = {job / limit:.2f}x limit {limit:.2f}s",
            "<= 1.25x",
            job / limit <= 1.25,
        ),
        Figure(
            "A LLM steps (gen + ratings)",
            f"{llm:.2f}s = {llm / limit:.2f}x limit",
            "<= 1.25x",
            llm / limit <= 1.25,
        ),
        Figure("A runs complete", f"{complete} ({n} pair rows each)"),
        raw,
    ]
    if peers:
        ratio = statistics.median(p.wall_s / r.wall_s for p, r in zip(peers, ours, strict=True))
        wall = statistics.median(p.wall_s for p in peers)
        figures += [
            Figure(
                "A distilabel wall (median)",
                f"{wall:.2f}s, outputs {sorted({p.outputs for p in peers})}, "
                f"requests {sorted({p.stats['requests'] for p in peers})}, "
                f"max in flight {sorted({p.stats['max_in_flight'] for p in peers})}",
            ),
            Figure("A distilabel / ours (median)", f"{ratio:.2f}x", ">= 5x", ratio >= 5),
            # No client finishes below the limit, so distilabel's wall over the limit caps the ratio in this run.
            Figure("A distilabel / limit (ceiling for any client)", f"{wall / limit:.2f}x"),
        ]
    else:
        figures.append(Figure("A distilabel / ours", f"skipped: {DISTILABEL_PYTHON} missing", ">= 5x"))
    return figures


# ---------------------------------------------------------------- scenario B


def scenario_b(n: int, rpm: float, work: Path) -> list[Figure]:
    """Run the job against a server capped at ``rpm`` requests per minute."""
    prompts = write_prompts(work / "prompts_b.jsonl", n)
    with run_fake_openai(latency=LATENCY_B, rpm=rpm) as server:
        server.reset()
        run = run_job(pipeline_settings(server.base_url, prompts, n, work / "b", cache=False))
        stats = server.stats()
    achieved = ok_200(stats) / (run.llm_s or run.wall_s) * 60
    failed = sum(run.count(asset, "failed") for asset in LLM_STEPS)
    too_many = int(stats["by_status"].get("429", 0))
    print(
        f"B ok={run.success} prompts={n} rpm_cap={rpm:g} job={run.wall_s:.1f}s llm={run.llm_s:.1f}s "
        f"requests={stats['requests']} by_status={stats['by_status']} achieved_rpm={achieved:.0f} "
        f"statuses={run.statuses}"
    )
    return [
        Figure(
            "B achieved RPM / cap",
            f"{achieved:.0f} / {rpm:g} = {achieved / rpm:.0%}",
            ">= 95%",
            achieved / rpm >= 0.95,
        ),
        Figure("B 429s received", f"{too_many} ({stats['requests']} requests)"),
        Figure("B failed rows (generations + ratings)", str(failed), "0", failed == 0),
    ]


# ---------------------------------------------------------------- scenario C


@dataclass(frozen=True)
class KillPoint:
    """The first run's kill: when, what the server had answered, what the client had stored."""

    seconds: float
    answered_at_kill: int
    in_flight_at_kill: int
    answered_after_drain: int
    stored_by_client: int

    @property
    def never_stored(self) -> int:
        """Return the answers the server sent (or finished after the kill) that the client never stored."""
        return self.answered_after_drain - self.stored_by_client


def scenario_c(n: int, work: Path) -> list[Figure]:
    """Kill a CLI run halfway through the generations, rerun it, count repeats and lost rows."""
    prompts = write_prompts(work / "prompts_c.jsonl", n)
    store, home = work / "c", work / "dagster_home"
    home.mkdir()
    with run_fake_openai(latency=LATENCY_C) as server:
        settings = pipeline_settings(server.base_url, prompts, n, store, cache=True)
        config = work / "pref_assets_c.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
        env = {**os.environ, "PREF_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}
        server.reset()
        kill = kill_halfway(start_materialize(env, work / "c_run1.log"), server, half=n, cache=settings.cache_path())
        first_requests = server.stats()["requests"]
        rerun = start_materialize(env, work / "c_run2.log")
        started = time.perf_counter()
        code = rerun.wait()
        rerun_s = time.perf_counter() - started
        stats = server.stats()
    statuses = read_statuses(store)
    rows = sum(statuses.get("dpo_pairs", {}).values())
    repeated = int(stats["repeated_after_success"])
    print(
        f"C killed at {kill.seconds:.1f}s: server answered={kill.answered_at_kill} "
        f"in_flight={kill.in_flight_at_kill} answered_after_drain={kill.answered_after_drain} "
        f"stored_by_client={kill.stored_by_client}; run1 requests={first_requests}; "
        f"rerun exit={code} {rerun_s:.1f}s requests={stats['requests'] - first_requests}; "
        f"repeated_after_success={repeated}; statuses={statuses}"
    )
    beyond = repeated - kill.never_stored
    unread = kill.never_stored - kill.in_flight_at_kill
    return [
        # An answer is stored in the same event-loop step that finishes reading it, so "stored" is "received".
        Figure("C requests repeated whose answer the run had", str(beyond), "0", beyond == 0),
        Figure(
            "C re-sent, answer never reached the run",
            f"{kill.never_stored} ({kill.in_flight_at_kill} in flight, {unread} sent but unread at the kill)",
        ),
        Figure("C repeated requests seen by the server", str(repeated)),
        Figure("C rows lost", f"{n - rows} (dpo_pairs rows {rows} of {n})", "0", rows == n),
    ]


def start_materialize(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `dagster asset materialize` of all assets of the partition in its own process group."""
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "--select",
        "*",
        "--partition",
        PARTITION,
        "-m",
        "pref_assets.definitions",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_halfway(process: subprocess.Popen[bytes], server: FakeServer, half: int, cache: str | None) -> KillPoint:
    """SIGKILL the run's process group once ``half`` requests are answered; wait for the server to drain."""
    started = time.perf_counter()
    while ok_200(server.stats()) < half:
        if process.poll() is not None:
            raise RuntimeError(f"the run ended (exit {process.returncode}) before it could be killed")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = server.stats()
    seconds = time.perf_counter() - started
    while server.stats()["in_flight"]:
        time.sleep(0.05)
    drained = ok_200(server.stats())
    return KillPoint(seconds, ok_200(at_kill), int(at_kill["in_flight"]), drained, stored_responses(cache))


def stored_responses(path: str | None) -> int:
    """Return how many responses the request cache at ``path`` holds."""
    if path is None or not Path(path).is_file():
        return 0
    cache = RequestCache(path)
    try:
        return cache.count()
    finally:
        cache.close()


# ---------------------------------------------------------------- overhead


@dataclass(frozen=True)
class Throughput:
    """Requests per second, and this process's CPU time per request (the server runs elsewhere)."""

    per_s: float
    cpu_ms: float


def scenario_overhead(requests: int, target: Target = FAKE) -> list[Figure]:
    """Compare ChatClient/run_calls with a raw asyncio client on a 0-latency server (or the target's server)."""
    figures = []
    with serve(target) as server:
        url = server.base_url
        for concurrency in (64, 256):
            ours = measure(server, requests, lambda c=concurrency: send_ours(url, requests, c, target))
            raw = measure(server, requests, lambda c=concurrency: send_raw(url, requests, c, target))
            print(
                f"overhead c={concurrency}: ours {ours.per_s:.0f} req/s ({ours.cpu_ms:.2f} ms CPU/request), "
                f"raw asyncio {raw.per_s:.0f} req/s ({raw.cpu_ms:.2f} ms CPU/request), "
                f"ours/raw {ours.per_s / raw.per_s:.2f}"
            )
            figures += [
                Figure(
                    f"overhead ours c={concurrency}",
                    f"{ours.per_s:.0f} req/s, {ours.cpu_ms:.2f} ms CPU/req ({ours.per_s / raw.per_s:.0%} of raw)",
                    "" if target.external else ">= 2000",
                    None if target.external else ours.per_s >= 2000,
                ),
                Figure(
                    f"overhead raw asyncio c={concurrency}",
                    f"{raw.per_s:.0f} req/s, {raw.cpu_ms:.2f} ms CPU/req",
                ),
            ]
    return figures


def measure(server: Server, requests: int, send: Callable[[], None]) -> Throughput:
    """Time ``send()`` (wall and this process's CPU) and check that every request got a 200 (the senders check
    their answers themselves; the fake server's counters check it again)."""
    server.reset()
    started, cpu_started = time.perf_counter(), time.process_time()
    send()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stats = server.stats()
    if stats is not None and (stats["requests"] != requests or ok_200(stats) != requests):
        raise RuntimeError(f"overhead run: {stats['requests']} requests, {stats['by_status']}")
    return Throughput(requests / wall, cpu / requests * 1000)


def overhead_calls(requests: int, model: str = MODEL) -> list[Call]:
    """Return ``requests`` distinct generation calls."""
    return [
        Call(
            ENDPOINT,
            model,
            ({"role": "user", "content": f"Say something about item {i}."},),
            (("max_tokens", 64),),
        )
        for i in range(requests)
    ]


def send_ours(base_url: str, requests: int, concurrency: int, target: Target = FAKE) -> None:
    """Send ``requests`` calls through run_calls with one ChatClient (no cache) at ``concurrency``."""
    key = target.api_key()
    results = run_calls(
        overhead_calls(requests, target.model),
        lambda _: ChatClient(base_url, api_key=key, max_concurrency=concurrency),
    )
    if not all(r.ok for r in results):
        failed = next(r for r in results if not r.ok)
        raise RuntimeError(f"overhead: some calls failed, e.g. {failed.error_kind}: {failed.error}")


def send_raw(base_url: str, requests: int, concurrency: int, target: Target = FAKE) -> None:
    """Send ``requests`` calls over ``concurrency`` plain asyncio HTTP/1.1 keep-alive connections."""
    url = urlsplit(base_url)
    tls = url.scheme == "https"
    host, port = url.hostname or "127.0.0.1", url.port or (443 if tls else 80)
    path = url.path.rstrip("/") + "/chat/completions"
    key = target.api_key()
    calls = overhead_calls(requests, target.model)
    payloads = (raw_request(host, port, path, call, key) for call in calls)
    asyncio.run(raw_clients(host, port, payloads, concurrency, tls))


def raw_request(host: str, port: int, path: str, call: Call, api_key: str | None = None) -> bytes:
    """Return the bytes of one chat-completions POST."""
    body = json.dumps({"model": call.model, "messages": list(call.messages), **dict(call.params)}).encode()
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def raw_clients(host: str, port: int, payloads: Iterator[bytes], connections: int, tls: bool = False) -> None:
    """Send every payload over ``connections`` keep-alive connections."""
    await asyncio.gather(*(raw_connection(host, port, payloads, tls) for _ in range(connections)))


async def raw_connection(host: str, port: int, payloads: Iterator[bytes], tls: bool = False) -> None:
    """Send payloads one after another on one connection until none are left; read each answer whole."""
    reader, writer = await asyncio.open_connection(host, port, ssl=True if tls else None)
    try:
        for payload in payloads:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            body = await read_body(reader, head)
            if status != b"200":
                raise RuntimeError(f"raw client: HTTP {status.decode()}: {body[:300]!r}")
            json.loads(body)
    finally:
        writer.close()
        await writer.wait_closed()


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """Read a response body: by its Content-Length, or chunk by chunk."""
    length = header_value(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if (header_value(head, b"transfer-encoding") or b"").strip().lower() != b"chunked":
        raise ValueError("response without Content-Length or chunked encoding")
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
        pass
    return b"".join(parts)


def header_value(head: bytes, wanted: bytes) -> bytes | None:
    """Return the value of header ``wanted`` (lower case) in a response head, or None."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == wanted:
            return value.strip()
    return None


def content_length(head: bytes) -> int:
    """Return the Content-Length of a response head."""
    value = header_value(head, b"content-length")
    if value is None:
        raise ValueError("response without Content-Length")
    return int(value)


# ---------------------------------------------------------------- main


def print_table(figures: list[Figure]) -> None:
    """Print every figure with its target and whether it is met."""
    width = max(len(f.name) for f in figures)
    value_width = max(len(f.value) for f in figures)
    print(f"\n{'figure':<{width}}  {'value':<{value_width}}  {'target':<9}  met")
    for f in figures:
        met = "-" if f.met is None else "yes" if f.met else "NO"
        print(f"{f.name:<{width}}  {f.value:<{value_width}}  {f.target:<9}  {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["A", "B", "C", "overhead", "all"], default="all")
    parser.add_argument("--prompts", type=int, default=200, help="prompts for A (and distilabel) and C")
    parser.add_argument("--repeat", type=int, default=3, help="runs of A and distilabel; medians are reported")
    parser.add_argument("--rpm", type=float, default=1200, help="B: the server's requests-per-minute cap")
    parser.add_argument("--b-prompts", type=int, default=300, help="B: prompts (3 requests each)")
    parser.add_argument("--requests", type=int, default=5000, help="overhead: requests per measurement")
    parser.add_argument("--base-url", help="run against this OpenAI-compatible server (ending in /v1), not the fake")
    parser.add_argument("--api-key-env", help="with --base-url: the environment variable holding its API key")
    parser.add_argument("--model", default=MODEL, help="with --base-url: the model to ask (default %(default)s)")
    parser.add_argument(
        "--structured-output",
        default="json_schema",
        help="with --base-url: the judge's response_format flavour (an endpoint structured_output value)",
    )
    args = parser.parse_args()
    if args.api_key_env and args.api_key_env not in os.environ:
        parser.error(f"--api-key-env {args.api_key_env}: that variable is not set")
    target = Target(args.base_url, args.api_key_env, args.model, args.structured_output)
    chosen = ["overhead", "A", "B", "C"] if args.scenario == "all" else [args.scenario]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="pref-bench-") as tmp:
        work = Path(tmp)
        for name in chosen:
            if name == "overhead":
                figures += scenario_overhead(args.requests, target)
            elif name == "A":
                figures += scenario_a(args.prompts, args.repeat, work, target)
            elif target.external:
                figures.append(skipped(name, target))
            elif name == "B":
                figures += scenario_b(args.b_prompts, args.rpm, work)
            else:
                figures += scenario_c(args.prompts, work)
    print_table(figures)


SKIP_REASONS = {
    "B": "it needs the fake server's RPM cap (429 + Retry-After) and its counters",
    "C": "it times the kill and counts repeats with the fake server's counters (/_stats)",
}


def skipped(name: str, target: Target) -> Figure:
    """Print and return why scenario ``name`` does not run against the target's server."""
    reason = SKIP_REASONS[name]
    print(f"{name} skipped against {target.base_url}: {reason}")
    return Figure(f"{name} skipped", reason)


if __name__ == "__main__":
    main()
