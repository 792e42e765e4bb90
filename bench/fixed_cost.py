"""Benchmark: the fixed cost of one run, from process start to the first LLM request and to the end.

    .venv/bin/python bench/fixed_cost.py [--prompts 5] [--repeat 3]

Runs `dagster asset materialize --select '*' --partition batch-00000 -m pref_assets.definitions` on a small
config (``--prompts`` prompts, one batch, every model on a fake server with 0 latency, request cache off) and a
Dagster home holding the project's dagster.yaml (SQLite storage, the ``llm`` pool limit, telemetry off) with
absolute paths. Compiled modules are cached in the work folder (PYTHONPYCACHEPREFIX), as a deployment keeps its
.pyc files. A first run creates the instance's databases and the source's row index and compiles every module; it
is reported apart, and the measured runs materialize the same partition again on that instance, as a deployment's
later runs do. One more run compiles our modules at start (PYTHONDONTWRITEBYTECODE=1, the installed packages
keep their .pyc files), as an environment that sets that variable does.

1. timeline (``--repeat`` runs, medians): the command starts in a wrapper that notes the time after
   ``import dagster``, after ``import dagster._cli`` and after ``import pref_assets.definitions`` (our imports,
   settings and ``build_definitions``), then runs the CLI. The first request is when the fake server's
   counter moves (polled every 2 ms); run events come from the instance's event log (timestamps, counts
   per step and type).
2. imports: ``python -X importtime`` of the same command; self time per top-level package, and which
   package's import brought each other package in (ours, Dagster's, or the interpreter's).
3. functions: ``cProfile`` of the same command; exclusive time by owner (ours, Dagster, SQLite/SQLAlchemy,
   import machinery, polars/pyarrow, ...) and the cumulative time of named phases (definitions build, run
   execution, event writes, our asset bodies, IO manager, metadata). cProfile slows Python code down about 1.5-2x;
   read its figures as shares.
4. metadata per batch: what the assets compute as metadata for one batch, timed in process on the frames the
   measured run stored.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from engine import pipeline_settings, write_prompts

from pref_assets.testing.fake_openai import FakeServer, run_fake_openai

ROOT = Path(__file__).resolve().parents[1]
PARTITION = "batch-00000"
COMMAND = ["asset", "materialize", "--select", "*", "--partition", PARTITION, "-m", "pref_assets.definitions"]
WRAPPER = r"""
import json, os, sys, time
marks = [["interpreter and site ready", time.time()]]
import dagster
marks.append(["import dagster", time.time()])
import dagster._cli
marks.append(["import dagster._cli", time.time()])
import pref_assets.definitions
marks.append(["import pref_assets.definitions (our imports, settings, build_definitions)", time.time()])
sys.argv = ["dagster", *sys.argv[1:]]
code = 0
try:
    dagster._cli.main()
except SystemExit as end:
    code = end.code
finally:
    marks.append(["CLI returned", time.time()])
    with open(os.environ["FIXED_COST_MARKS"], "w") as out:
        json.dump(marks, out)
sys.exit(code)
"""
DAGSTER_PACKAGES = ("dagster", "dagster_shared", "dagster_pipes", "dagster_webserver", "dagster_graphql")
STORAGE_PACKAGES = ("sqlalchemy", "alembic", "sqlite3", "_sqlite3")


# ---------------------------------------------------------------- setup


@dataclass(frozen=True)
class Setup:
    """Where a run's files are and the environment it runs with."""

    work: Path
    home: Path
    env: dict[str, str]


def make_setup(work: Path, server: FakeServer, n: int) -> Setup:
    """Write the prompts, the project config and a Dagster home with the project's dagster.yaml (absolute paths)."""
    prompts = write_prompts(work / "prompts.jsonl", n)
    settings = pipeline_settings(server.base_url, prompts, n, work / "store", cache=False)
    config = work / "pref_assets.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    home = work / "dagster_home"
    home.mkdir()
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text(encoding="utf-8"))
    instance["storage"]["sqlite"]["base_dir"] = str(home / "storage_db")
    instance["local_artifact_storage"]["config"]["base_dir"] = str(home / "artifacts")
    instance["compute_logs"]["config"]["base_dir"] = str(home / "compute_logs")
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance), encoding="utf-8")
    env = {**os.environ, "PREF_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Compiled modules are cached (as in a deployment) in a tree of the work folder, not beside the sources.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return Setup(work, home, env)


def run_command(setup: Setup, prefix: list[str], server: FakeServer, log: Path) -> tuple[float, float | None, int]:
    """Run ``prefix + COMMAND``; return its start (epoch seconds), when the server saw the first request, exit."""
    server.reset()
    with log.open("wb") as out:
        started = time.time()
        process = subprocess.Popen(
            [*prefix, *COMMAND], env=setup.env, cwd=setup.work, stdout=out, stderr=subprocess.STDOUT
        )
        first = None
        while process.poll() is None:
            if first is None and server.stats()["requests"]:
                first = time.time()
            time.sleep(0.002)
    if process.returncode:
        raise RuntimeError(f"{' '.join(prefix + COMMAND)} exited {process.returncode}:\n{log.read_text()[-3000:]}")
    return started, first, process.returncode


# ---------------------------------------------------------------- 1. timeline


@dataclass(frozen=True)
class Timeline:
    """One measured run: named intervals in seconds, and its events."""

    intervals: dict[str, float]
    events_by_step: dict[str, Counter[str]]
    step_s: dict[str, float]


def last_run_events(home: Path) -> list[Any]:
    """Return the event log entries of the instance's latest run, in order."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        return list(instance.all_logs(run.run_id))


def without_bytecode_cache(setup: Setup) -> Setup:
    """Return ``setup`` with no compiled-module cache for our modules (PYTHONDONTWRITEBYTECODE=1, no prefix):
    every start compiles them from source; installed packages keep their installed .pyc files."""
    env = {k: v for k, v in setup.env.items() if k != "PYTHONPYCACHEPREFIX"}
    return Setup(setup.work, setup.home, {**env, "PYTHONDONTWRITEBYTECODE": "1"})


def timeline(setup: Setup, server: FakeServer, index: int) -> Timeline:
    """Run the command in the wrapper once; return its intervals."""
    marks_file = setup.work / f"marks{index}.json"
    setup.env["FIXED_COST_MARKS"] = str(marks_file)
    started, first_request, _ = run_command(
        setup, [sys.executable, "-c", WRAPPER], server, setup.work / f"timeline{index}.log"
    )
    ended = time.time()
    marks = [(name, float(t)) for name, t in json.loads(marks_file.read_text())]
    events = [e for e in last_run_events(setup.home) if e.dagster_event is not None]
    first_event, last_event = events[0].timestamp, events[-1].timestamp
    starts = {e.step_key: e.timestamp for e in events if e.dagster_event.event_type_value == "STEP_START"}
    ends = {e.step_key: e.timestamp for e in events if e.dagster_event.event_type_value == "STEP_SUCCESS"}
    intervals: dict[str, float] = {}
    previous = started
    for name, t in marks[:-1]:
        intervals[name] = t - previous
        previous = t
    intervals["CLI: load the code location, resolve the selection, create the run"] = first_event - previous
    first_step = min(starts.values())
    intervals["run events before the first step starts"] = first_step - first_event
    if first_request is not None:
        intervals["first step start to first LLM request"] = first_request - first_step
    intervals["steps (first start to last success)"] = max(ends.values()) - first_step
    intervals["after the last step to the last run event"] = last_event - max(ends.values())
    intervals["last run event to process exit"] = ended - last_event
    intervals["TOTAL process wall"] = ended - started
    if first_request is not None:
        intervals["TOTAL process start to first LLM request"] = first_request - started
    by_step: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        by_step[e.step_key or "(run)"][e.dagster_event.event_type_value] += 1
    step_s = {key: ends[key] - starts[key] for key in ends}
    return Timeline(intervals, dict(by_step), step_s)


def print_timelines(runs: list[Timeline], first_run: Timeline, uncached: Timeline) -> None:
    """Print the median of every interval, and the events per step."""
    print(
        f"\n1. timeline: median of {len(runs)} runs | first run (fresh instance, nothing compiled yet) | "
        "one run compiling our modules at start (PYTHONDONTWRITEBYTECODE=1)"
    )
    for name in runs[0].intervals:
        value = statistics.median(r.intervals.get(name, 0.0) for r in runs)
        print(
            f"  {name:<76} {value:7.3f}s | {first_run.intervals.get(name, 0.0):7.3f}s | "
            f"{uncached.intervals.get(name, 0.0):7.3f}s"
        )
    events = runs[-1].events_by_step
    total = sum(sum(c.values()) for c in events.values())
    print(f"  events in the run's event log: {total}")
    for step, counts in events.items():
        seconds = runs[-1].step_s.get(step)
        took = f"{seconds:.3f}s" if seconds is not None else "-"
        shown = ", ".join(f"{kind}={count}" for kind, count in counts.most_common())
        print(f"    {step:<28} {sum(counts.values()):3d} events, step {took:>7}: {shown}")


# ---------------------------------------------------------------- 2. imports


@dataclass
class ImportNode:
    """One line of -X importtime: a module, its self and cumulative microseconds, its importer."""

    name: str
    self_us: int
    cumulative_us: int
    depth: int
    parent: ImportNode | None = None


LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(text: str) -> list[ImportNode]:
    """Return the import tree of an -X importtime log (lines are printed children first)."""
    rows = [(int(m[1]), int(m[2]), len(m[3]) // 2, m[4]) for m in map(LINE.match, text.splitlines()) if m]
    nodes = [ImportNode(name, s, c, d) for s, c, d, name in rows]
    pending: dict[int, list[ImportNode]] = defaultdict(list)  # children waiting for their parent line
    for node in nodes:
        for child in pending.pop(node.depth + 1, []):
            child.parent = node
        pending[node.depth].append(node)
    return nodes


def top(name: str) -> str:
    """Return a module's top-level package."""
    return name.split(".")[0]


def owner(package: str) -> str:
    """Return whose a top-level package is."""
    if package == "pref_assets":
        return "ours"
    if package in DAGSTER_PACKAGES:
        return "Dagster"
    return package


def print_imports(text: str) -> None:
    """Print self time per top-level package and the packages each owner's imports brought in."""
    nodes = parse_importtime(text)
    total = sum(n.self_us for n in nodes) / 1e6
    by_package: Counter[str] = Counter()
    for n in nodes:
        by_package[top(n.name)] += n.self_us
    print(f"\n2. imports (-X importtime, whole command; the flag itself adds overhead): {total:.2f}s in {len(nodes)} ")
    print("   modules; self time per top-level package:")
    for package, us in by_package.most_common(14):
        print(f"    {package:<22} {us / 1e6:6.3f}s  ({owner(package)})")
    # Which owner's import statement first brought each foreign package in (whole subtree, cumulative).
    brought: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    for n in nodes:
        if n.parent is None or top(n.parent.name) == top(n.name):
            continue
        key = (owner(top(n.parent.name)), top(n.name))
        brought[key] += n.cumulative_us
        examples.setdefault(key, f"{n.parent.name} -> {n.name}")
    roots: Counter[str] = Counter()
    for n in nodes:
        if n.parent is None:
            roots[owner(top(n.name))] += n.cumulative_us
    print("   imports at the top of the import tree (cumulative), by whose module was imported:")
    for who, us in roots.most_common(6):
        print(f"    {who:<22} {us / 1e6:6.3f}s")
    print("   foreign packages pulled in by ours (cumulative, first importer shown):")
    for (who, package), us in brought.most_common():
        if who == "ours" and us > 5000:
            print(f"    {package:<22} {us / 1e6:6.3f}s  via {examples[(who, package)]}")


# ---------------------------------------------------------------- 3. functions


def classify(filename: str, function: str) -> str:
    """Return the owner of one profiled function."""
    path = filename.replace("\\", "/")
    if "/pref_assets/" in path:
        return "ours (pref_assets)"
    if any(f"/{p}/" in path for p in DAGSTER_PACKAGES):
        return "Dagster"
    if any(f"/{p}/" in path for p in ("sqlalchemy", "alembic")) or "sqlite3" in function:
        return "SQLite + SQLAlchemy (Dagster's storage)"
    if "importlib" in path or any(
        k in function for k in ("_imp.", "marshal.", "exec_dynamic", "create_dynamic", "posix.stat", "listdir")
    ):
        return "import machinery"
    if any(f"/{p}/" in path for p in ("polars", "pyarrow", "numpy")) or "polars" in function:
        return "polars / pyarrow / numpy"
    if any(f"/{p}/" in path for p in ("pydantic", "pydantic_core")):
        return "pydantic"
    if any(f"/{p}/" in path for p in ("httpx", "httpcore", "h11", "anyio")):
        return "httpx / h11"
    if "/site-packages/" in path:
        return "other packages"
    if path == "~":
        return "built-ins (other)"
    return "standard library"


def named(stats: dict[Any, Any], path_part: str, function: str) -> tuple[float, int]:
    """Return the cumulative seconds and calls of the profiled functions matching ``path_part`` and ``function``."""
    seconds, calls = 0.0, 0
    for (filename, _, name), (_, ncalls, _, cumulative, _) in stats.items():
        if name == function and path_part in filename.replace("\\", "/"):
            seconds, calls = seconds + cumulative, calls + ncalls
    return seconds, calls


def print_profile(path: Path) -> None:
    """Print exclusive time by owner and the cumulative time of named phases."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    by_owner: Counter[str] = Counter()
    for (filename, _, name), (_, _, exclusive, _, _) in stats.items():
        by_owner[classify(filename, name)] += exclusive
    total = sum(by_owner.values())
    print(f"\n3. cProfile of the command: {total:.2f}s of profiled time; exclusive time by owner:")
    for who, seconds in by_owner.most_common():
        print(f"    {who:<42} {seconds:6.2f}s  {seconds / total:5.1%}")
    phases = [
        ("imports (all _find_and_load, nested bodies included)", "importlib._bootstrap", "_find_and_load"),
        ("our settings: load_settings", "/pref_assets/settings.py", "load_settings"),
        ("our build_definitions (Dagster decorators included)", "/pref_assets/definitions.py", "build_definitions"),
        ("  of which build_partitions (counting the source)", "/pref_assets/defs/partitions.py", "build_partitions"),
        ("  of which build_assets", "/pref_assets/defs/stages/__init__.py", "build_assets"),
        ("Dagster: repository definition from Definitions", "dagster/", "get_repository_def"),
        ("Dagster: execute_job (create the run, then execute it)", "dagster/_core/execution/api.py", "execute_job"),
        ("  of which execute_run", "dagster/_core/execution/api.py", "execute_run"),
        ("Dagster: instance.handle_new_event (every event)", "dagster/_core/instance", "handle_new_event"),
        ("Dagster: SqliteEventLogStorage.store_event", "event_log/sqlite", "store_event"),
        ("Dagster: concurrency slot claims (pool llm)", "dagster/", "claim_concurrency_slot"),
        ("ours: ParquetIOManager.handle_output (store)", "/pref_assets/defs/io_manager.py", "handle_output"),
        ("ours: ParquetIOManager.load_input", "/pref_assets/defs/io_manager.py", "load_input"),
        ("ours: metadata (stages.common._metadata)", "/pref_assets/defs/stages/common.py", "_metadata"),
        ("ours: run_calls (LLM request loops)", "/pref_assets/clients/runner.py", "run_calls"),
    ]
    for asset in ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records"):
        phases.append((f"ours: asset body {asset}", "/pref_assets/defs/stages/", asset))
    print("   cumulative time of named phases (they overlap; calls in brackets):")
    for label, path_part, function in phases:
        seconds, calls = named(stats, path_part, function)
        if calls:
            print(f"    {label:<60} {seconds:6.3f}s  [{calls}]")
    mine = [
        (cumulative, f"{Path(f).parent.name}/{Path(f).name}:{name}")
        for (f, _, name), (_, _, _, cumulative, _) in stats.items()
        if "/pref_assets/" in f.replace("\\", "/") and name != "<module>"
    ]
    print("   our functions with the most cumulative time:")
    for seconds, where in sorted(mine, reverse=True)[:12]:
        print(f"    {where:<60} {seconds:6.3f}s")


# ---------------------------------------------------------------- 4. metadata per batch


def print_metadata_cost(store: Path) -> None:
    """Time what each stage computes as metadata for the stored batch (in this process, after a warm-up)."""
    import polars as pl

    from pref_assets.defs.metadata import call_metadata, preview, status_metadata

    print("\n4. metadata per batch (status counts + preview for every asset, call figures for the generations):")
    total = 0.0
    for asset in ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records"):
        path = store / asset / f"{PARTITION}.parquet"
        if not path.is_file():
            continue
        frame = pl.read_parquet(path)
        columns = [c for c in ("prompt_id", "model", "status", "reason") if c in frame.columns]

        def compute(frame: pl.DataFrame = frame, columns: list[str] = columns) -> None:
            status_metadata(frame)
            preview(frame, columns)
            if "latency_s" in frame.columns and "model" in frame.columns:
                call_metadata(frame, "model")

        compute()
        started = time.perf_counter()
        for _ in range(20):
            compute()
        seconds = (time.perf_counter() - started) / 20
        total += seconds
        print(f"    {asset:<22} {frame.height:5d} rows  {seconds * 1000:7.2f} ms")
    print(f"    {'all six':<22}             {total * 1000:7.2f} ms")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5, help="prompts in the one batch")
    parser.add_argument("--repeat", type=int, default=3, help="measured timeline runs (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pref-fixed-") as tmp, run_fake_openai() as server:
        setup = make_setup(Path(tmp), server, args.prompts)
        print(f"fixed cost: {args.prompts} prompts, partition {PARTITION}, fake server at 0 latency, cache off")
        print(f"command: dagster {' '.join(COMMAND)}")
        first = timeline(setup, server, 0)
        runs = [timeline(setup, server, i) for i in range(1, args.repeat + 1)]
        uncached = timeline(without_bytecode_cache(setup), server, args.repeat + 1)
        print_timelines(runs, first, uncached)
        run_command(setup, [sys.executable, "-X", "importtime", "-m", "dagster"], server, setup.work / "imports.log")
        print_imports((setup.work / "imports.log").read_text(encoding="utf-8", errors="replace"))
        profile = setup.work / "run.prof"
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "dagster"]
        run_command(setup, prefix, server, setup.work / "profile.log")
        print_profile(profile)
        print_metadata_cost(setup.work / "store")


if __name__ == "__main__":
    main()
