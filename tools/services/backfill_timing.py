"""Measure the wall time of materializing N batches three ways, against the fake LLM server.

    .venv/bin/python tools/services/backfill_timing.py [--partitions 3] [--latency 0.2] [--batch-size 8]

1. ``daemon``: ``dagster job backfill -j preference_job --partitions ... --noprompt`` with a running
   ``dagster-daemon run`` (queued runs, one run worker process per batch).
2. ``cli-loop``: one ``dagster asset materialize --select '*' --partition K`` per batch, one after another.
3. ``in-process``: ``execute_in_process`` per batch in one Python process (the floor).

Each way gets its own storage directory, so none is served from another's request cache. Everything runs
in a temporary directory on loopback; every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from pref_assets.testing.fake_openai import run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

BIN = Path(sys.executable).parent
JOB_NAME = "preference_job"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Timing:
    """One way's result: total wall time and, for the daemon, where the time went."""

    mode: str
    wall_s: float
    statuses: list[str]
    details: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------- set-up


def write_instance(home: Path, max_runs: int, pool_limit: int = 4) -> Path:
    """A SQLite instance with a queued run coordinator polled every second; ``pool_limit`` steps of one pool
    (the LLM steps share ``llm``) at once."""
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": 1, "dequeue_use_threads": True, "dequeue_num_workers": 4},
        },
        "concurrency": {
            "runs": {"max_concurrent_runs": max_runs},
            "pools": {"default_limit": pool_limit, "granularity": "op"},
        },
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


def write_workspace(path: Path) -> Path:
    """A workspace loading ``pref_assets.definitions`` (settings from PREF_ASSETS_CONFIG)."""
    workspace = {"load_from": [{"python_module": {"module_name": "pref_assets.definitions"}}]}
    path.write_text(yaml.safe_dump(workspace))
    return path


def env_for(home: Path, config: Path) -> dict[str, str]:
    """The environment every Dagster process here runs with."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PREF_ASSETS_CONFIG": str(config),
        "DAGSTER_TELEMETRY_DISABLED": "1",
        "PYTHONWARNINGS": "ignore",
    }


def partition_keys(count: int) -> list[str]:
    """``batch-00000`` .. for ``count`` batches."""
    return [f"batch-{i:05d}" for i in range(count)]


# ---------------------------------------------------------------- the daemon


def _default_signals() -> None:
    # A shell that runs jobs in the background starts them with SIGINT ignored; the daemon would inherit it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def running_daemon(workspace: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``dagster-daemon run -w workspace`` in its own process group for the block."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=workspace.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Stop ``process`` and its children (its own process group): SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_for_daemons(home: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Wait until the backfill and run-queue daemons have sent a heartbeat."""
    import dagster as dg

    wanted = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if wanted <= set(instance.get_daemon_heartbeats()):
                return
            time.sleep(0.5)
    raise RuntimeError(f"daemons not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def run_records(home: Path) -> list[object]:
    """Return every run record of the instance at ``home``."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_run_records())


def wait_for_runs(home: Path, count: int, timeout: float) -> list[object]:
    """Wait until ``count`` runs exist and all have finished; return their records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = run_records(home)
        if len(records) >= count and all(r.dagster_run.status.value in TERMINAL for r in records):  # type: ignore[attr-defined]
            return records
        time.sleep(0.5)
    states = [(r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status.value) for r in run_records(home)]  # type: ignore[attr-defined]
    raise TimeoutError(f"runs not finished after {timeout:.0f} s: {states}")


def backfill_with_daemon(root: Path, base_url: str, partitions: int, batch_size: int, timeout: float) -> Timing:
    """Queue a job backfill from the CLI and let a running daemon launch and finish the runs."""
    home = write_instance(root / "daemon_home", max_runs=partitions)
    config = write_settings(fake_settings(base_url, root / "daemon_data", batch_size, partitions), root / "daemon.yaml")
    workspace = write_workspace(root / "workspace.yaml")
    env = env_for(home, config)
    log = root / "daemon.log"
    keys = partition_keys(partitions)
    with running_daemon(workspace, env, log) as daemon:
        wait_for_daemons(home, daemon, log)
        start = time.time()
        command = [str(BIN / "dagster"), "job", "backfill", "-j", JOB_NAME, "-w", str(workspace)]
        subprocess.run([*command, "--partitions", ",".join(keys), "--noprompt"], env=env, check=True, cwd=root,
                       capture_output=True, timeout=300)  # fmt: skip
        queued = time.time()
        records = wait_for_runs(home, partitions, timeout)
        end = time.time()
    return Timing("daemon", end - start, _statuses(records), _daemon_details(records, start, queued, end))


def _statuses(records: list[object]) -> list[str]:
    return [r.dagster_run.status.value for r in records]  # type: ignore[attr-defined]


def _daemon_details(records: list[object], start: float, queued: float, end: float) -> dict[str, object]:
    created = [r.create_timestamp.timestamp() for r in records]  # type: ignore[attr-defined]
    started = [r.start_time for r in records if r.start_time]  # type: ignore[attr-defined]
    durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]  # type: ignore[attr-defined]
    return {
        "cli_backfill_command_s": round(queued - start, 2),
        "until_first_run_created_s": round(min(created) - start, 2),
        "until_first_run_started_s": round(min(started) - start, 2) if started else -1.0,
        "until_last_run_started_s": round(max(started) - start, 2) if started else -1.0,
        "run_duration_mean_s": round(sum(durations) / len(durations), 2) if durations else -1.0,
        "after_last_run_started_s": round(end - max(started), 2) if started else -1.0,
        "runs_created_started_ended_s": sorted(_run_times(r, start) for r in records),
    }


def _run_times(record: object, start: float) -> tuple[str, float, float, float]:
    run = record.dagster_run  # type: ignore[attr-defined]
    created = record.create_timestamp.timestamp() - start  # type: ignore[attr-defined]
    started = (record.start_time or start) - start  # type: ignore[attr-defined]
    ended = (record.end_time or start) - start  # type: ignore[attr-defined]
    return (run.tags.get("dagster/partition", "?"), round(created, 1), round(started, 1), round(ended, 1))


# ---------------------------------------------------------------- without the daemon


def materialize_loop(root: Path, base_url: str, partitions: int, batch_size: int) -> Timing:
    """One ``dagster asset materialize`` process per batch, one after another."""
    home = write_instance(root / "cli_home", max_runs=partitions)
    config = write_settings(fake_settings(base_url, root / "cli_data", batch_size, partitions), root / "cli.yaml")
    env = env_for(home, config)
    start = time.time()
    codes = []
    for key in partition_keys(partitions):
        command = [str(BIN / "dagster"), "asset", "materialize", "--select", "*", "--partition", key]
        command += ["-m", "pref_assets.definitions"]
        codes.append(subprocess.run(command, env=env, cwd=root, capture_output=True, timeout=600).returncode)
    end = time.time()
    statuses = ["SUCCESS" if code == 0 else f"EXIT {code}" for code in codes]
    return Timing("cli-loop", end - start, statuses)


def in_process(root: Path, base_url: str, partitions: int, batch_size: int) -> Timing:
    """``execute_in_process`` per batch in this process (definitions built once)."""
    import dagster as dg

    from pref_assets.definitions import build_definitions

    settings = fake_settings(base_url, root / "inproc_data", batch_size, partitions)
    start = time.time()
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    statuses = []
    with dg.DagsterInstance.ephemeral() as instance:
        for key in partition_keys(partitions):
            ok = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False).success
            statuses.append("SUCCESS" if ok else "FAILURE")
    return Timing("in-process", time.time() - start, statuses)


# ---------------------------------------------------------------- main


def measure(
    modes: list[str], partitions: int, batch_size: int, latency: float, timeout: float, keep: Path | None = None
) -> list[Timing]:
    """Run the chosen ``modes`` against one fake server and return their timings.

    Work files go to a temporary directory, or to ``keep`` (left in place, with the daemon's log).
    """
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _measure_in(keep, modes, partitions, batch_size, latency, timeout)
    with tempfile.TemporaryDirectory(prefix="pref-assets-backfill-") as tmp:
        return _measure_in(Path(tmp), modes, partitions, batch_size, latency, timeout)


def _measure_in(
    root: Path, modes: list[str], partitions: int, batch_size: int, latency: float, timeout: float
) -> list[Timing]:
    results = []
    with run_fake_openai(latency=latency) as server:
        for mode in modes:
            work = root / mode
            work.mkdir()
            if mode == "daemon":
                results.append(backfill_with_daemon(work, server.base_url, partitions, batch_size, timeout))
            elif mode == "cli-loop":
                results.append(materialize_loop(work, server.base_url, partitions, batch_size))
            elif mode == "in-process":
                results.append(in_process(work, server.base_url, partitions, batch_size))
            else:
                raise ValueError(f"unknown mode {mode!r}; known: daemon, cli-loop, in-process")
    return results


def use_bytecode_cache(directory: Path) -> None:
    """Let child processes cache bytecode under ``directory`` and warm it once.

    With PYTHONDONTWRITEBYTECODE set and no precompiled bytecode in the venv, every process compiles
    dagster and the project from source again on import (several seconds per run worker).
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(directory.resolve())
    warm = "import dagster, dagster._cli, dagster._daemon.cli, dagster._grpc.server, pref_assets.definitions"
    subprocess.run([sys.executable, "-W", "ignore", "-c", warm], check=True, timeout=600)


def main(argv: list[str] | None = None) -> None:
    """Print one JSON line per mode."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--modes", default="daemon,cli-loop,in-process")
    parser.add_argument("--keep", type=Path, default=None, help="work here and leave the files (logs) in place")
    parser.add_argument(
        "--pycache", type=Path, default=None,
        help="let the Dagster processes write and reuse bytecode in this directory (PYTHONPYCACHEPREFIX)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.pycache is not None:
        use_bytecode_cache(args.pycache)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for timing in measure(modes, args.partitions, args.batch_size, args.latency, args.timeout, args.keep):
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(timing).items()}))


if __name__ == "__main__":
    main()
