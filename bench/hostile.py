"""Benchmark of hostile and unlucky inputs: what they cost in time, requests and memory.

    .venv/bin/python bench/hostile.py [--part judge|dead|poison|huge|all]

judge   parse_verdicts and scan_json on judge answers of n and 8n characters of hostile shapes (runs of "{",
        "{" then "[", lines of "*", repeated <think>, spaces after "Rating" or in a rationale), best of 3:
        seconds and t(8n)/t(n) (linear about 8, quadratic about 64); 100k against 200k "{" (linear about 2);
        scan_json alone on 200k against 1.6M "{", past the read limit.
dead    200 calls at concurrency 16 through run_calls + ChatClient to a port nothing listens on: time until
        the breaker parks the endpoint (the first circuit_open result), results by kind.
poison  the fake server with 3% poisoned bodies (always HTTP 500), 400 distinct calls at concurrency 16, 0.05 s
        latency, request cache on: results by kind and wall time; a rerun on the same cache (requests sent again,
        counted by the server); a control run without poison for the wall-time ratio.
huge    answers of 50 MB to 16 calls asking for 64 tokens, read with the default response cap (8 MiB), in a child
        process: error kinds, wall time, the child's peak RSS, cache size; a control of 16 normal answers.

Every part prints its figures as it goes; a table of all figures closes the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pref_assets.clients.cache import RequestCache
from pref_assets.clients.llm import CIRCUIT_OPEN, Admit, ChatClient, ChatRequest, ChatResult
from pref_assets.clients.runner import EndpointParkedError, run_calls, to_request
from pref_assets.clients.transport import DEFAULT_MAX_RESPONSE_BYTES
from pref_assets.core.calls import Call
from pref_assets.core.embedded_json import scan_json
from pref_assets.core.judge import MAX_ANSWER_CHARS, JudgeParseError, parse_verdicts
from pref_assets.core.rubric import OVERALL
from pref_assets.testing.fake_openai import FakeServer, poisoned, run_fake_openai

ENDPOINT = "fake"
MODEL = "fake-model"
CONCURRENCY = 16
REPEAT = 3
DEAD_CALLS = 200
POISON = 0.03
POISON_PROMPTS = 200
POISON_LATENCY = 0.05
GENERATOR_TEMPERATURES = (0.2, 1.0)
HUGE_BYTES = 50 << 20
HUGE_CALLS = 16
PARTS = ("judge", "dead", "poison", "huge")


@dataclass(frozen=True)
class Figure:
    """One line of the closing table."""

    name: str
    value: str


# ---------------------------------------------------------------- judge text


@dataclass(frozen=True)
class Shape:
    """A hostile judge answer made of ``n`` repetitions of something; ``n`` keeps 8n within what is read."""

    name: str
    make: Callable[[int], str]
    n: int


SHAPES = (
    Shape("runs of {", lambda n: "{" * n, 25_000),
    Shape("{ then [", lambda n: "{" * n + "[" * n, 25_000),
    Shape("lines of *", lambda n: "*\n" * n, 25_000),
    Shape("repeated <think>", lambda n: "<think>" * n, 8_000),
    Shape("spaces after Rating", lambda n: "Answer 1\nRating" + " " * n + "\nAnswer 2\nRating: 3", 50_000),
    Shape(
        "spaces in a rationale",
        lambda n: "Answer 1\nRationale: x" + " " * n + "y\nRating: 4\nAnswer 2\nRating: 3",
        50_000,
    ),
)


def part_judge() -> list[Figure]:
    """Time both readers on each shape at n and 8n, and on 100k against 200k "{"."""
    readers = {"parse_verdicts": read_verdicts, "scan_json": scan_json}
    print(f"judge text: best of {REPEAT}; at most {MAX_ANSWER_CHARS:,} characters are read")
    print(f"{'shape':<22} {'reader':<15} {'chars n':>9} {'chars 8n':>9} {'t(n) s':>9} {'t(8n) s':>9} {'ratio':>6}")
    figures = []
    for shape in SHAPES:
        small, big = shape.make(shape.n), shape.make(8 * shape.n)
        for name, read in readers.items():
            ratio = print_pair(shape.name, name, read, small, big)
            figures.append(Figure(f"judge {shape.name}: {name} t(8n)/t(n)", f"{ratio:.1f} (linear ~8)"))
    print(f"{'shape':<22} {'reader':<15} {'chars':>9} {'chars 2x':>9} {'t s':>9} {'t(2x) s':>9} {'ratio':>6}")
    for name, read in readers.items():
        ratio = print_pair("{ 100k vs 200k", name, read, "{" * 100_000, "{" * 200_000)
        figures.append(Figure(f"judge 200k {{ / 100k {{: {name}", f"{ratio:.1f} (linear ~2, quadratic ~4)"))
    # past the read limit, scan_json alone: the per-character cost no longer steps up with the stack's size
    ratio = print_pair("{ 200k vs 1.6M", "scan_json", scan_json, "{" * 200_000, "{" * 1_600_000)
    figures.append(Figure("judge 1.6M { / 200k {: scan_json", f"{ratio:.1f} (linear ~8)"))
    return figures


def read_verdicts(text: str) -> object:
    """Read a two-answer judge answer; an unreadable one is an outcome here, not an error."""
    with contextlib.suppress(JudgeParseError):
        return parse_verdicts(text, 2, OVERALL)
    return None


def print_pair(shape: str, reader: str, read: Callable[[str], object], small: str, big: str) -> float:
    """Print the best times of ``read`` on ``small`` and ``big``; return their ratio."""
    t_small, t_big = best_time(read, small), best_time(read, big)
    ratio = t_big / t_small
    print(f"{shape:<22} {reader:<15} {len(small):>9,} {len(big):>9,} {t_small:>9.4f} {t_big:>9.4f} {ratio:>6.1f}")
    return ratio


def best_time(read: Callable[[str], object], text: str) -> float:
    """Return the shortest of ``REPEAT`` timed reads of ``text``."""
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        read(text)
        times.append(time.perf_counter() - started)
    return min(times)


# ---------------------------------------------------------------- request path helpers


class RecordingClient(ChatClient):
    """A ChatClient that notes each result and when it came back (perf_counter)."""

    def __init__(self, base_url: str, done: list[tuple[float, ChatResult]], **options: Any) -> None:
        super().__init__(base_url, **options)
        self._done = done

    async def complete(self, request: ChatRequest, *, admit: Admit | None = None) -> ChatResult:
        """Complete as ChatClient does, then note the result."""
        result = await super().complete(request, admit=admit)
        self._done.append((time.perf_counter(), result))
        return result


@dataclass(frozen=True)
class Run:
    """One run_calls: its wall time, every result with its time since the start, and whether it parked."""

    wall_s: float
    done: list[tuple[float, ChatResult]]
    parked: str | None

    def kinds(self) -> Counter[str]:
        """Return how many results ended ok or with each error kind."""
        return Counter(r.error_kind or "ok" for _, r in self.done)

    def first(self, kind: str) -> float | None:
        """Return the seconds until the first result of ``kind``, if any."""
        return min((t for t, r in self.done if r.error_kind == kind), default=None)

    def last_ok(self) -> float:
        """Return the seconds until the last answer came back (0 if none did)."""
        return max((t for t, r in self.done if r.ok), default=0.0)


def timed_run(calls: list[Call], base_url: str, cache: Path | None = None) -> Run:
    """Send ``calls`` through run_calls with one RecordingClient (the request cache at ``cache``, if given)."""
    done: list[tuple[float, ChatResult]] = []

    def client_for(_: str) -> ChatClient:
        stored = RequestCache(cache) if cache is not None else None
        return RecordingClient(base_url, done, max_concurrency=CONCURRENCY, cache=stored)

    started = time.perf_counter()
    parked = None
    try:
        run_calls(calls, client_for)
    except EndpointParkedError as err:
        parked = str(err)
    wall = time.perf_counter() - started
    return Run(wall, [(t - started, r) for t, r in done], parked)


def chat_calls(n: int, label: str, params: tuple[tuple[str, Any], ...] = (("max_tokens", 64),)) -> list[Call]:
    """Return ``n`` distinct calls."""
    return [
        Call(ENDPOINT, MODEL, ({"role": "user", "content": f"{label} {i}: explain it briefly."},), params)
        for i in range(n)
    ]


def describe(kinds: Counter[str]) -> str:
    """Return result kinds as ``kind=count`` words."""
    return " ".join(f"{kind}={count}" for kind, count in sorted(kinds.items()))


# ---------------------------------------------------------------- dead endpoint


def part_dead() -> list[Figure]:
    """Send 200 calls to a port nothing listens on; time until the breaker parks the endpoint."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    run = timed_run(chat_calls(DEAD_CALLS, "Question"), url)
    parked_at = run.first(CIRCUIT_OPEN)
    shown = "never" if parked_at is None else f"{parked_at:.2f} s"
    print(
        f"dead endpoint: parked after {shown}; run_calls returned after {run.wall_s:.2f} s; "
        f"results {describe(run.kinds())}; EndpointParkedError: {run.parked is not None}"
    )
    if run.parked:
        print(f"  {run.parked[:200]}")
    return [
        Figure(f"dead endpoint: first call to parked ({DEAD_CALLS} calls, c={CONCURRENCY})", shown),
        Figure("dead endpoint: run_calls wall", f"{run.wall_s:.2f} s"),
        Figure("dead endpoint: results", describe(run.kinds())),
    ]


def closed_port() -> int:
    """Return a local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- poisoned requests


def part_poison(work: Path) -> list[Figure]:
    """Run 400 calls against 3% poisoned bodies, rerun them on the same cache, and run a control without poison."""
    calls = generation_calls()
    expected = sum(poisoned(to_request(call).body(), POISON) for call in calls)
    with run_fake_openai(poison=POISON, latency=POISON_LATENCY) as server:
        first, sent = cached_run(server, calls, work / "poison.sqlite")
        rerun, resent = cached_run(server, calls, work / "poison.sqlite")
    with run_fake_openai(latency=POISON_LATENCY) as server:
        control, control_sent = cached_run(server, calls, work / "control.sqlite")
    cached = sum(r.cached for _, r in rerun.done)
    print(
        f"poison {POISON:.0%}: {len(calls)} calls, {expected} bodies poisoned by the server's hash; "
        f"first run {first.wall_s:.2f} s {describe(first.kinds())}, requests {sent['requests']} "
        f"{sent['by_status']}, last answer at {first.last_ok():.2f} s, parked: {first.parked is not None}"
    )
    print(
        f"poison rerun on the cache: {rerun.wall_s:.2f} s {describe(rerun.kinds())}, answered from cache {cached}, "
        f"requests sent again {resent['requests']} ({resent['distinct_bodies']} distinct bodies) {resent['by_status']}"
    )
    print(
        f"poison control (no poison): {control.wall_s:.2f} s {describe(control.kinds())}, "
        f"requests {control_sent['requests']}; wall ratio {first.wall_s / control.wall_s:.2f}x"
    )
    return [
        Figure(f"poison {POISON:.0%}: results of {len(calls)} calls", describe(first.kinds())),
        Figure("poison: bodies poisoned (server's hash)", str(expected)),
        Figure("poison: requests sent / HTTP 500s", f"{sent['requests']} / {sent['by_status'].get('500', 0)}"),
        Figure(
            "poison: wall / control wall",
            f"{first.wall_s:.2f} s / {control.wall_s:.2f} s = {first.wall_s / control.wall_s:.2f}x",
        ),
        Figure("poison: last answer / control's last answer", f"{first.last_ok():.2f} s / {control.last_ok():.2f} s"),
        Figure(
            "poison rerun: requests sent again",
            f"{resent['requests']} ({resent['distinct_bodies']} distinct bodies; {cached} answers from cache)",
        ),
        Figure("poison rerun: wall", f"{rerun.wall_s:.2f} s"),
    ]


def generation_calls() -> list[Call]:
    """Return 200 prompts x 2 generators' worth of distinct calls (the generators differ in temperature)."""
    return [
        Call(
            ENDPOINT,
            MODEL,
            ({"role": "user", "content": f"Prompt {i}: explain item {i} briefly."},),
            (("max_tokens", 64), ("temperature", temperature)),
        )
        for temperature in GENERATOR_TEMPERATURES
        for i in range(POISON_PROMPTS)
    ]


def cached_run(server: FakeServer, calls: list[Call], cache: Path) -> tuple[Run, dict[str, Any]]:
    """Run ``calls`` against ``server`` (counters reset first) with the request cache at ``cache``."""
    server.reset()
    run = timed_run(calls, server.base_url, cache)
    return run, server.stats()


# ---------------------------------------------------------------- huge bodies


def part_huge() -> list[Figure]:
    """Run the huge-body calls in a child process against 50 MB answers, then against normal ones."""
    with run_fake_openai(huge_body_bytes=HUGE_BYTES) as server:
        huge = run_child(server.base_url)
        huge_hostile = server.stats()["hostile"]
    with run_fake_openai() as server:
        normal = run_child(server.base_url)
    for label, report in (("huge", huge), ("control", normal)):
        print(
            f"{label}: {HUGE_CALLS} calls max_tokens=64, cap {DEFAULT_MAX_RESPONSE_BYTES:,} bytes: "
            f"{describe(Counter(report['kinds']))}, wall {report['wall_s']:.2f} s, child peak RSS (getrusage) "
            f"{report['rss_peak_kb'] / 1024:.0f} MiB (after imports {report['rss_start_kb'] / 1024:.0f} MiB, "
            f"VmHWM {mib(report['hwm_kb'])}), cache {report['cache_bytes']:,} bytes"
        )
    print(f"huge: answers the server padded: {huge_hostile.get('huge_body', 0)}; first error: {huge['first_error']}")
    return [
        Figure(f"huge {HUGE_BYTES >> 20} MB answers: results of {HUGE_CALLS}", describe(Counter(huge["kinds"]))),
        Figure("huge: wall / control wall", f"{huge['wall_s']:.2f} s / {normal['wall_s']:.2f} s"),
        Figure(
            "huge: child peak RSS / control",
            f"{huge['rss_peak_kb'] / 1024:.0f} MiB / {normal['rss_peak_kb'] / 1024:.0f} MiB "
            f"(+{(huge['rss_peak_kb'] - huge['rss_start_kb']) / 1024:.0f} / "
            f"+{(normal['rss_peak_kb'] - normal['rss_start_kb']) / 1024:.0f} MiB over the calls; "
            f"VmHWM {mib(huge['hwm_kb'])} / {mib(normal['hwm_kb'])})",
        ),
        Figure("huge: cache size / control", f"{huge['cache_bytes']:,} / {normal['cache_bytes']:,} bytes"),
    ]


def mib(kb: int | None) -> str:
    """Return kibibytes as MiB, or "n/a"."""
    return "n/a" if kb is None else f"{kb / 1024:.0f} MiB"


def run_child(base_url: str) -> dict[str, Any]:
    """Run this script's child mode against ``base_url`` and return its report."""
    command = [sys.executable, str(Path(__file__).resolve()), "--huge-child", base_url]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(line.removeprefix("RESULT ")))


def huge_child(base_url: str) -> None:
    """Send the 16 calls with the request cache on; print one RESULT line with this process's own figures."""
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="pref-hostile-") as tmp:
        cache = Path(tmp) / "cache.sqlite"
        run = timed_run(chat_calls(HUGE_CALLS, "Huge"), base_url, cache)
        cache_bytes = sum(path.stat().st_size for path in Path(tmp).iterdir())
    report = {
        "kinds": dict(run.kinds()),
        "wall_s": run.wall_s,
        "rss_start_kb": rss_start,
        "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cache_bytes": cache_bytes,
        "hwm_kb": high_water_kb(),
        "first_error": next((r.error for _, r in run.done if r.error), None),
    }
    print("RESULT " + json.dumps(report), flush=True)


def high_water_kb() -> int | None:
    """Return this process image's peak RSS (VmHWM, Linux), which, unlike getrusage's, starts anew at exec."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) if line else None


# ---------------------------------------------------------------- main


def print_table(figures: list[Figure]) -> None:
    """Print every figure as ``figure | value``."""
    width = max(len(f.name) for f in figures)
    print(f"\n{'figure':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for f in figures:
        print(f"{f.name:<{width}} | {f.value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--huge-child", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.huge_child:
        huge_child(args.huge_child)
        return
    # huge first: on Linux a child's getrusage peak starts at its parent's, which the other parts raise
    chosen = ["huge", "judge", "dead", "poison"] if args.part == "all" else [args.part]
    figures: dict[str, list[Figure]] = {}
    with tempfile.TemporaryDirectory(prefix="pref-hostile-") as tmp:
        for part in chosen:
            if part == "judge":
                figures[part] = part_judge()
            elif part == "dead":
                figures[part] = part_dead()
            elif part == "poison":
                figures[part] = part_poison(Path(tmp))
            else:
                figures[part] = part_huge()
            print()
    print_table([f for part in PARTS if part in figures for f in figures[part]])


if __name__ == "__main__":
    main()
