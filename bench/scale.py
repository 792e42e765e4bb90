"""Benchmark of many batches: backfills with the Dagster daemon, ranges in one run, 10^4-10^5 prompts.

    .venv/bin/python bench/scale.py [--scenario partitions|scale|all] [--base-url URL] [--prompts N]

partitions  the same 1,000 prompts as 20 batches of 50 through an asset backfill run by the daemon (the kind
            the UI launches, which honours the assets' multi-run BackfillPolicy: 10 batches a run), against
            1 batch of 1,000 in one `dagster asset materialize` process; 0.5 s latency, endpoint
            max_concurrency 100, request cache off. Walls, runs launched, ratio; then `dagster job backfill`
            (one run per batch) for contrast.
scale       N prompts (default 100,000, and 10,000 beside it) at 0.05 s latency, batch_size 1000, through a
            multi-run asset backfill (or `--scale-mode range`: `backfill.single_run` and
            `dagster asset materialize --partition-range` in one process): wall against the endpoint-bound
            floor 3*N*L/C, peak RSS of every process, every row id of every stage read back from the Parquet
            files, and where the time went (step intervals from the runs' event logs).

Without --base-url each scenario starts the project's fake server (`pref_assets.testing.fake_openai`) with
the latency asked for; with it, every model is sent to that server (`--model` names the model) and the
latency given is only used to compute the floor. Everything lives in a temporary directory (DAGSTER_HOME,
storage, prompts, logs); every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "services"))

import backfill_timing as bt  # noqa: E402
from engine import bench_models, write_prompts  # noqa: E402

from pref_assets.settings import (  # noqa: E402
    BackfillSettings,
    CacheSettings,
    EndpointSettings,
    Settings,
    SourceSettings,
)
from pref_assets.testing.fake_openai import run_fake_openai  # noqa: E402
from pref_assets.testing.fake_pipeline import write_settings  # noqa: E402

ASSETS = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records")
LLM_STEPS = ("generations_by_model", "ratings")
JOB_NAME = "preference_job"
CALLS_PER_PROMPT = 3  # two generators and the judge
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
DAGSTER = [sys.executable, "-W", "ignore", "-m", "dagster"]


# ---------------------------------------------------------------- the endpoint


@dataclass
class Endpoint:
    """Where the models are: the fake server started here (with counters) or a server given by URL."""

    base_url: str
    model: str
    server: Any = None
    cpu_at_reset: float = 0.0

    def reset(self) -> None:
        """Zero the fake server's counters and note its CPU time."""
        if self.server is not None:
            self.server.reset()
            self.cpu_at_reset = cpu_seconds(self.server.process.pid)

    def cpu_since_reset(self) -> float | None:
        """Return the CPU seconds the fake server used since the last reset (None: an external server)."""
        if self.server is None:
            return None
        return cpu_seconds(self.server.process.pid) - self.cpu_at_reset

    def stats(self) -> str:
        """Return the fake server's counters as one line, or a note that there are none."""
        if self.server is None:
            return "server counters: none (external server)"
        s = self.server.stats()
        return f"server: requests={s['requests']} by_status={s['by_status']} max_in_flight={s['max_in_flight']}"


@contextmanager
def endpoint(base_url: str | None, model: str, latency: float) -> Iterator[Endpoint]:
    """Yield the server given by URL, or a fake server with ``latency`` seconds per request."""
    if base_url:
        yield Endpoint(base_url, model)
        return
    with run_fake_openai(latency=latency) as server:
        yield Endpoint(server.base_url, "fake-model", server)


# ---------------------------------------------------------------- settings, prompts, instance


def settings_for(
    ep: Endpoint, prompts: Path, n: int, store: Path, batch_size: int, concurrency: int, backfill: BackfillSettings
) -> Settings:
    """Two generators and a judge on ``ep``, ``n`` prompts in batches of ``batch_size``, request cache off."""
    endpoints = [
        EndpointSettings(
            name="bench", base_url=ep.base_url, max_concurrency=concurrency, structured_output="json_schema"
        )
    ]
    generators, judge = bench_models(ep.model, "bench")
    return Settings(
        storage_dir=str(store),
        batch_size=batch_size,
        source=SourceSettings(kind="files", paths=[str(prompts)], limit=n),
        endpoints=endpoints,
        generators=generators,
        judge=judge,
        cache=CacheSettings(enabled=False),
        backfill=backfill,
    )


@dataclass
class Setup:
    """One side of a comparison: its instance, settings file, environment and storage."""

    root: Path
    home: Path
    config: Path
    env: dict[str, str]
    settings: Settings

    @property
    def store(self) -> Path:
        """Return the storage directory of the pipeline's files."""
        return Path(self.settings.storage_dir)


def prepare(root: Path, settings: Settings, runs_at_once: int) -> Setup:
    """Write the instance and settings of one side under ``root``; index the prompt file (a deployment's
    source is indexed before its first backfill: listing partitions at load builds it)."""
    root.mkdir(parents=True)
    home = bt.write_instance(root / "home", max_runs=runs_at_once, pool_limit=max(runs_at_once, 1))
    config = write_settings(settings, root / "pref_assets.yaml")
    env = bt.env_for(home, config) | {"PYTHONUNBUFFERED": "1"}
    from pref_assets.defs.partitions import build_partitions

    build_partitions(settings)  # builds <storage_dir>/index/... once
    return Setup(root, home, config, env, settings)


def batch_keys(count: int) -> list[str]:
    """Return ``batch-00000``, ... for ``count`` batches."""
    return [f"batch-{i:05d}" for i in range(count)]


# ---------------------------------------------------------------- peak RSS of a process tree


@dataclass
class Proc:
    """One sampled process: what it runs and its peak resident set (VmHWM) when last seen."""

    role: str
    peak_kb: int = 0
    cpu_s: float = 0.0


class TreeSampler:
    """Sample ``/proc`` every ``interval`` seconds: the peak RSS (VmHWM) of every descendant of the root pids."""

    def __init__(self, roots: list[int], interval: float = 0.5) -> None:
        self.roots = set(roots)
        self.interval = interval
        self.procs: dict[int, Proc] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add_root(self, pid: int) -> None:
        """Also sample ``pid`` and its descendants."""
        self.roots.add(pid)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Read every live descendant's VmHWM once."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        wanted = set(self.roots)
        grew = True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in wanted and pid not in wanted}
            wanted |= more
            grew = bool(more)
        for pid in wanted:
            peak = _vm_hwm(pid)
            if peak is None:
                continue
            proc = self.procs.get(pid)
            if proc is None:
                proc = self.procs[pid] = Proc(_role(pid))
            proc.peak_kb = max(proc.peak_kb, peak)
            proc.cpu_s = max(proc.cpu_s, cpu_seconds(pid))

    def peaks(self, role: str) -> list[float]:
        """Return the peak RSS in MB of every process of ``role`` seen."""
        return sorted((p.peak_kb / 1024 for p in self.procs.values() if p.role == role), reverse=True)

    def cpu_s(self) -> float:
        """Return the CPU seconds (user + system) of every process seen, as last sampled."""
        return sum(p.cpu_s for p in self.procs.values())

    def summary(self) -> str:
        """Return the largest peak of each role, and how many processes had it."""
        roles = sorted({p.role for p in self.procs.values()})
        parts = []
        for role in roles:
            peaks = self.peaks(role)
            parts.append(f"{role}: n={len(peaks)} max={peaks[0]:.0f}MB")
        return "; ".join(parts)


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds ``pid`` has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if "resource_tracker" in cmd:
        return "other"
    if "execute_run" in cmd or "spawn_main" in cmd:  # the code server starts each run in a spawned process
        return "run worker"
    if "grpc" in cmd:
        return "code server"
    if "dagster-daemon" in cmd or "_daemon" in cmd:
        return "daemon"
    if "asset materialize" in cmd:
        return "materialize"
    if "job backfill" in cmd:
        return "job backfill cli"
    return "other"


# ---------------------------------------------------------------- runs, steps and their timings


@dataclass
class RunTiming:
    """One run: when it was created, started and ended (epoch seconds), its status, its steps' intervals."""

    run_id: str
    status: str
    created: float
    started: float | None
    ended: float | None
    partitions: int
    steps: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Outcome:
    """One way of materializing the prompts: wall time, its runs, peak RSS, rows read back."""

    label: str
    launched: float
    finished: float
    runs: list[RunTiming]
    rss: TreeSampler
    notes: dict[str, object] = field(default_factory=dict)
    server_cpu_s: float | None = None  # the fake server's CPU over the outcome (None: an external server)
    requests: int = 0

    @property
    def wall_s(self) -> float:
        """Return seconds from the launch to the end of the last run."""
        return self.finished - self.launched

    @property
    def first_created_s(self) -> float:
        """Return seconds from the launch until the first run existed."""
        return min(r.created for r in self.runs) - self.launched if self.runs else float("nan")

    def llm_busy_s(self) -> float:
        """Return the seconds during which at least one LLM step of any run was running."""
        spans = sorted((s, e) for r in self.runs for key, s, e in r.steps if key in LLM_STEPS)
        busy, end = 0.0, float("-inf")
        for s, e in spans:
            if e > end:
                busy += e - max(s, end)
                end = e
        return busy

    def step_totals(self) -> dict[str, float]:
        """Return each step's seconds summed over the runs."""
        totals: dict[str, float] = {}
        for run in self.runs:
            for key, s, e in run.steps:
                totals[key] = totals.get(key, 0.0) + (e - s)
        return totals


def read_runs(home: Path) -> list[RunTiming]:
    """Return every run of the instance at ``home`` with its step intervals."""
    import dagster as dg

    out = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            tags = run.tags
            if "dagster/asset_partition_range_start" in tags:
                start, end = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
                partitions = int(end.split("-")[-1]) - int(start.split("-")[-1]) + 1
            else:
                partitions = 1
            out.append(
                RunTiming(
                    run.run_id,
                    run.status.value,
                    record.create_timestamp.timestamp(),
                    record.start_time,
                    record.end_time,
                    partitions,
                    _step_intervals(instance, run.run_id),
                )
            )
    return sorted(out, key=lambda r: r.created)


def _step_intervals(instance: Any, run_id: str) -> list[tuple[str, float, float]]:
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    starts: dict[str, float] = {}
    out = []
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.step_key in starts:
            out.append((event.step_key, starts.pop(event.step_key), entry.timestamp))
    return out


def wait_runs_done(home: Path, timeout: float, settle: float = 3.0, want_backfills_done: bool = True) -> None:
    """Wait until the instance's backfills are finished and every run of it has ended."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus

    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            backfills = instance.get_backfills()
            backfills_done = all(b.status != BulkActionStatus.REQUESTED for b in backfills) or not want_backfills_done
            if runs and backfills_done and all(r.status.value in TERMINAL_RUN for r in runs):
                return
            time.sleep(settle)
        states = [(r.run_id[:8], r.status.value) for r in instance.get_runs()]
        raise TimeoutError(
            f"not finished after {timeout:.0f} s: runs {states}, backfills "
            f"{[b.status.value for b in instance.get_backfills()]}"
        )


# ---------------------------------------------------------------- three ways to materialize


def launch_asset_backfill(setup: Setup, keys: list[str], graph: Any) -> str:
    """Add an asset backfill of the six assets over ``keys`` to the instance, as the UI's "Materialize"
    of selected partitions does (GraphQL ``launchPartitionBackfill``): the daemon splits it into runs by the
    assets' BackfillPolicy."""
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    with dg.DagsterInstance.from_config(str(setup.home)) as instance:
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=make_new_backfill_id(),
            asset_graph=graph,
            partition_names=keys,
            asset_selection=[dg.AssetKey(a) for a in ASSETS],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title="bench/scale.py",
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        return backfill.backfill_id


@contextmanager
def daemon_for(setup: Setup) -> Iterator[Any]:
    """Run the Dagster daemon for ``setup`` (its workspace loads pref_assets.definitions) until the block ends."""
    workspace = bt.write_workspace(setup.root / "workspace.yaml")
    log = setup.root / "daemon.log"
    with bt.running_daemon(workspace, setup.env, log) as daemon:
        bt.wait_for_daemons(setup.home, daemon, log)
        yield daemon


def asset_backfill(label: str, setup: Setup, keys: list[str], timeout: float) -> Outcome:
    """Time an asset backfill of ``keys`` run by the daemon: launch to the end of the last run."""
    from pref_assets.definitions import build_definitions

    graph = build_definitions(setup.settings).resolve_asset_graph()
    with daemon_for(setup) as daemon, TreeSampler([daemon.pid]) as rss:
        launched = time.time()
        backfill_id = launch_asset_backfill(setup, keys, graph)
        wait_runs_done(setup.home, timeout)
    runs = read_runs(setup.home)
    finished = max((r.ended or launched) for r in runs)
    return Outcome(label, launched, finished, runs, rss, {"backfill_id": backfill_id})


def job_backfill(label: str, setup: Setup, keys: list[str], timeout: float) -> Outcome:
    """Time ``dagster job backfill`` of ``keys`` (one run per batch) run by the daemon."""
    with daemon_for(setup) as daemon, TreeSampler([daemon.pid]) as rss:
        launched = time.time()
        command = [
            *DAGSTER,
            "job",
            "backfill",
            "-j",
            JOB_NAME,
            "-w",
            str(setup.root / "workspace.yaml"),
            "--partitions",
            ",".join(keys),
            "--noprompt",
        ]
        subprocess.run(command, env=setup.env, cwd=setup.root, check=True, capture_output=True, timeout=300)
        wait_runs_done(setup.home, timeout)
    runs = read_runs(setup.home)
    finished = max((r.ended or launched) for r in runs)
    return Outcome(label, launched, finished, runs, rss)


def materialize(label: str, setup: Setup, keys: list[str], timeout: float) -> Outcome:
    """Time one ``dagster asset materialize`` process: one partition, or a range (``--partition-range``)."""
    select = ",".join(ASSETS)
    where = ["--partition", keys[0]] if len(keys) == 1 else ["--partition-range", f"{keys[0]}...{keys[-1]}"]
    command = [*DAGSTER, "asset", "materialize", "--select", select, *where, "-m", "pref_assets.definitions"]
    log = setup.root / "materialize.log"
    with TreeSampler([]) as rss, log.open("wb") as out:
        launched = time.time()
        process = subprocess.Popen(
            command, env=setup.env, cwd=setup.root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        rss.add_root(process.pid)
        try:
            code = process.wait(timeout)
        finally:
            bt.stop_group(process)
        finished = time.time()
    if code != 0:
        raise RuntimeError(f"{label}: dagster asset materialize exited {code}:\n{log.read_text()[-3000:]}")
    return Outcome(label, launched, finished, read_runs(setup.home), rss)


# ---------------------------------------------------------------- reading the rows back


@dataclass
class StageCheck:
    """One stage read back from its Parquet files."""

    stage: str
    rows: int
    distinct_ids: int
    missing: int
    unexpected: int
    no_status: int
    statuses: dict[str, int]

    @property
    def complete(self) -> bool:
        """Return whether every expected row id is there, none other, each row with a status."""
        return self.missing == 0 and self.unexpected == 0 and self.no_status == 0


def check_rows(store: Path, keys: list[str], batch_size: int, n: int) -> list[StageCheck]:
    """Read every stage's files and compare their row ids with ``batch-XXXXX#i`` for the ``n`` prompts."""
    expected = {f"{key}#{i}" for b, key in enumerate(keys) for i in range(min(batch_size, n - b * batch_size))}
    out = []
    for stage in ASSETS:
        files = [store / stage / f"{key}.parquet" for key in keys]
        present = [f for f in files if f.is_file()]
        if present:
            frame = pl.concat([pl.read_parquet(f, columns=["row_id", "status"]) for f in present])
        else:
            frame = pl.DataFrame({"row_id": [], "status": []}, schema={"row_id": pl.String, "status": pl.String})
        ids = set(frame["row_id"].drop_nulls().to_list())
        statuses = {str(k): int(v) for k, v in frame["status"].value_counts().iter_rows()}
        out.append(
            StageCheck(
                stage,
                frame.height,
                len(ids),
                len(expected - ids),
                len(ids - expected),
                frame["status"].null_count(),
                statuses,
            )
        )
    return out


def print_checks(label: str, checks: list[StageCheck]) -> bool:
    """Print one line per stage; return whether all are complete."""
    for c in checks:
        print(
            f"  {label} {c.stage}: rows={c.rows} ids={c.distinct_ids} missing={c.missing} "
            f"unexpected={c.unexpected} without_status={c.no_status} statuses={c.statuses}"
        )
    return all(c.complete for c in checks)


def describe(o: Outcome) -> None:
    """Print an outcome's wall, runs, RSS and where the time went."""
    statuses: dict[str, int] = {}
    for r in o.runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    print(
        f"{o.label}: wall={o.wall_s:.1f}s runs={len(o.runs)} {statuses} "
        f"first_run_created_after={o.first_created_s:.1f}s llm_busy={o.llm_busy_s():.1f}s"
    )
    for r in o.runs:
        start = (r.started or o.launched) - o.launched
        end = (r.ended or o.launched) - o.launched
        steps = " ".join(f"{k}={e - s:.1f}" for k, s, e in r.steps)
        print(
            f"  run {r.run_id[:8]} batches={r.partitions} created={r.created - o.launched:.1f} "
            f"started={start:.1f} ended={end:.1f} {r.status} | {steps}"
        )
    print(f"  peak RSS: {o.rss.summary()}")


# ---------------------------------------------------------------- scenario: partitions


def scenario_partitions(args: argparse.Namespace, work: Path) -> list[str]:
    """20 batches of 50 through a multi-run asset backfill against 1 batch of 1,000 in one process."""
    n, small, latency, conc = args.partition_prompts, args.small_batch, args.latency, args.concurrency
    keys_small = batch_keys(-(-n // small))
    prompts = write_prompts(work / "prompts_partitions.jsonl", n)
    floor = CALLS_PER_PROMPT * n * latency / conc
    lines = []
    with endpoint(args.base_url, args.model, latency) as ep:
        per_run = BackfillSettings(partitions_per_run=args.partitions_per_run)
        one = prepare(work / "one", settings_for(ep, prompts, n, work / "one" / "data", n, conc, per_run), 1)
        runs_at_once = -(-len(keys_small) // args.partitions_per_run)
        many = prepare(
            work / "many", settings_for(ep, prompts, n, work / "many" / "data", small, conc, per_run), runs_at_once
        )
        ep.reset()
        single = materialize(f"1 batch of {n} (asset materialize)", one, ["batch-00000"], args.timeout)
        describe(single)
        print(f"  {ep.stats()}")
        ok_single = print_checks("single", check_rows(one.store, ["batch-00000"], n, n))
        ep.reset()
        multi = asset_backfill(
            f"{len(keys_small)} batches of {small} (asset backfill, daemon)", many, keys_small, args.timeout
        )
        describe(multi)
        print(f"  {ep.stats()}")
        ok_multi = print_checks("backfill", check_rows(many.store, keys_small, small, n))
        runs_from_first = multi.finished - min(r.created for r in multi.runs)
        lines += [
            f"floor 3*N*L/C = {floor:.1f}s (N={n}, L={latency}s, C={conc})",
            f"1 batch of {n}, one process: wall {single.wall_s:.1f}s, runs {len(single.runs)}, "
            f"rows complete {ok_single}",
            f"{len(keys_small)} batches of {small}, asset backfill: wall {multi.wall_s:.1f}s from launch "
            f"(daemon picked it up after {multi.first_created_s:.1f}s), {runs_from_first:.1f}s from the first run's "
            f"creation, runs {len(multi.runs)}, rows complete {ok_multi}",
            f"ratio backfill / single: {multi.wall_s / single.wall_s:.2f}x from launch, "
            f"{runs_from_first / single.wall_s:.2f}x from the first run (target <= 1.3x)",
        ]
        if not args.skip_job_backfill:
            jobs = prepare(
                work / "jobs",
                settings_for(ep, prompts, n, work / "jobs" / "data", small, conc, per_run),
                args.job_runs_at_once,
            )
            ep.reset()
            per_batch = job_backfill(
                f"{len(keys_small)} batches of {small} (dagster job backfill, daemon)", jobs, keys_small, args.timeout
            )
            describe(per_batch)
            print(f"  {ep.stats()}")
            ok_jobs = print_checks("job backfill", check_rows(jobs.store, keys_small, small, n))
            from_first = per_batch.finished - min(r.created for r in per_batch.runs)
            lines.append(
                f"dagster job backfill (one run per batch, {args.job_runs_at_once} runs at once): wall "
                f"{per_batch.wall_s:.1f}s from launch, {from_first:.1f}s from the first run, runs "
                f"{len(per_batch.runs)}, rows complete {ok_jobs}; / single {per_batch.wall_s / single.wall_s:.2f}x"
            )
    return lines


# ---------------------------------------------------------------- scenario: scale


def scale_once(args: argparse.Namespace, ep: Endpoint, n: int, work: Path) -> tuple[Outcome, bool, float]:
    """Run ``n`` prompts in batches of ``--scale-batch-size`` the chosen way; return outcome, rows complete, floor."""
    size, latency, conc = args.scale_batch_size, args.scale_latency, args.concurrency
    keys = batch_keys(-(-n // size))
    prompts = write_prompts(work / f"prompts_{n}.jsonl", n)
    if args.scale_mode == "range":
        policy = BackfillSettings(single_run=True)
        runs_at_once = 1
    else:
        policy = BackfillSettings(partitions_per_run=args.partitions_per_run)
        runs_at_once = args.runs_at_once
    root = work / f"scale_{n}"
    setup = prepare(root, settings_for(ep, prompts, n, root / "data", size, conc, policy), runs_at_once)
    ep.reset()
    if args.scale_mode == "range":
        outcome = materialize(f"N={n}: {len(keys)} batches, --partition-range, one run", setup, keys, args.timeout)
    else:
        label = f"N={n}: {len(keys)} batches, asset backfill ({args.partitions_per_run} a run, {runs_at_once} at once)"
        outcome = asset_backfill(label, setup, keys, args.timeout)
    outcome.server_cpu_s = ep.cpu_since_reset()
    outcome.requests = ep.server.stats()["requests"] if ep.server is not None else CALLS_PER_PROMPT * n
    describe(outcome)
    print(f"  {ep.stats()}")
    ok = print_checks(f"N={n}", check_rows(setup.store, keys, size, n))
    floor = CALLS_PER_PROMPT * n * latency / conc
    return outcome, ok, floor


def cpu_lines(n: int, outcome: Outcome, floor: float) -> list[str]:
    """Return where the CPU went: the fake server's, the Dagster processes' (daemon, code server, run workers;
    sampled every 0.5 s, so a little low), and the floor that CPU sets on this machine's cores."""
    server_cpu, requests = outcome.server_cpu_s, outcome.requests
    ours = outcome.rss.cpu_s()
    cores = len(os.sched_getaffinity(0))
    if server_cpu is None:
        return [f"N={n}: CPU of the Dagster processes {ours:.0f}s ({ours / requests * 1000:.2f} ms/request)"]
    total = server_cpu + ours
    cpu_floor = total / cores
    return [
        f"N={n}: CPU: fake server {server_cpu:.0f}s ({server_cpu / requests * 1000:.2f} ms/request: alone on one "
        f"core at most {requests / server_cpu:.0f} req/s; the floor needs {requests / floor:.0f}/s), Dagster "
        f"processes {ours:.0f}s ({ours / requests * 1000:.2f} ms/request), together {total:.0f}s on {cores} cores: "
        f"CPU-bound floor {cpu_floor:.0f}s; wall / max(endpoint floor, CPU floor) = "
        f"{outcome.wall_s / max(floor, cpu_floor):.2f}x",
    ]


def scenario_scale(args: argparse.Namespace, work: Path) -> list[str]:
    """N prompts at low latency; the same at N/10 for the RSS comparison."""
    sizes = sorted({max(args.prompts // 10, args.scale_batch_size), args.prompts})
    lines = []
    peaks: dict[int, float] = {}
    with endpoint(args.base_url, args.model, args.scale_latency) as ep:
        for n in sizes:
            outcome, ok, floor = scale_once(args, ep, n, work)
            role = "materialize" if args.scale_mode == "range" else "run worker"
            peaks[n] = max(outcome.rss.peaks(role) or [float("nan")])
            totals = " ".join(f"{k}={v:.1f}s" for k, v in outcome.step_totals().items())
            busy = outcome.llm_busy_s()
            from_first = outcome.finished - min(r.created for r in outcome.runs)
            lines += [
                f"N={n}: wall {outcome.wall_s:.1f}s vs floor {floor:.1f}s (3*N*L/C, L={args.scale_latency}s, "
                f"C={args.concurrency}) = {outcome.wall_s / floor:.2f}x (target <= 1.2x); from the first run's "
                f"creation {from_first:.1f}s = {from_first / floor:.2f}x; runs {len(outcome.runs)}; "
                f"every row id at every stage with a status: {ok}",
                f"N={n}: LLM steps running {busy:.1f}s of the wall ({busy / outcome.wall_s:.0%}); "
                f"LLM-busy time / floor {busy / floor:.2f}x; no LLM step running {outcome.wall_s - busy:.1f}s "
                f"(daemon pickup {outcome.first_created_s:.1f}s, run start-up, prompts/grouped/pairs/records)",
                f"N={n}: step seconds summed over runs: {totals}",
                f"N={n}: peak RSS {outcome.rss.summary()}",
                *cpu_lines(n, outcome, floor),
            ]
    if len(peaks) == 2:
        small, big = sorted(peaks)
        lines.append(
            f"peak RSS of the process running the steps: {peaks[small]:.0f}MB at N={small}, {peaks[big]:.0f}MB at "
            f"N={big} ({peaks[big] / peaks[small]:.2f}x for {big // small}x the prompts)"
        )
    return lines


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Run the chosen scenarios and print their figures, then a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("partitions", "scale", "all"), default="all")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server (default: the fake one)")
    parser.add_argument("--model", default="fake-model", help="the model name sent to --base-url")
    parser.add_argument("--concurrency", type=int, default=100, help="the endpoint's max_concurrency (C)")
    parser.add_argument("--latency", type=float, default=0.5, help="partitions: fake server latency (L), s")
    parser.add_argument("--partition-prompts", type=int, default=1000)
    parser.add_argument("--small-batch", type=int, default=50, help="partitions: batch size of the backfill side")
    parser.add_argument("--partitions-per-run", type=int, default=10, help="backfill.partitions_per_run")
    parser.add_argument("--skip-job-backfill", action="store_true", help="partitions: leave out the contrast")
    parser.add_argument("--job-runs-at-once", type=int, default=4, help="max_concurrent_runs for job backfill")
    parser.add_argument("--prompts", type=int, default=100_000, help="scale: N (N/10 also runs, for RSS)")
    parser.add_argument("--scale-latency", type=float, default=0.05)
    parser.add_argument("--scale-batch-size", type=int, default=1000)
    parser.add_argument("--scale-mode", choices=("backfill", "range"), default="backfill")
    parser.add_argument("--runs-at-once", type=int, default=2, help="scale: max_concurrent_runs of the backfill")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", type=Path, default=None, help="work here and leave the files (logs) in place")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="pref-assets-scale-") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    """Run the scenarios in ``work`` and print the summary."""
    summary: list[str] = [f"load average at the start: {os.getloadavg()[0]:.1f} ({len(os.sched_getaffinity(0))} cores)"]
    if args.scenario in ("partitions", "all"):
        summary += ["[partitions]", *scenario_partitions(args, work)]
    if args.scenario in ("scale", "all"):
        summary += ["[scale]", *scenario_scale(args, work)]
    summary.append(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("\n=== figures ===")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
