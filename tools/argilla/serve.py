#!/usr/bin/env python3
"""Run a local argilla-server 2.8 with its own Redis and in-memory search engine.

Starts redis-server (no persistence), osmem-server (in-memory, OpenSearch API),
prepares the SQLite database (migrate, default user ``argilla`` with API key
``argilla.apikey`` in workspace ``argilla``) and starts the server on 127.0.0.1.
Prints ``READY http://127.0.0.1:PORT`` once ``GET /api/v1/me`` answers 200, then runs
until SIGINT/SIGTERM and stops every child process.

Install first with tools/argilla/install.sh. Standard library only; any python3 runs it:

    python3 tools/argilla/serve.py [--port 6900] [--data-dir DIR] [--venv DIR]

Child output goes to DATA_DIR/logs/ (``--verbose`` echoes it here instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
PATCH_DIR = HERE / "pythonpath"
API_KEY = "argilla.apikey"
HOST = "127.0.0.1"
STOP_GRACE_S = 10.0
T = TypeVar("T")


class ServeError(RuntimeError):
    """A child process failed, exited or did not become ready in time."""


class Terminated(Exception):
    """Raised in the main thread when SIGTERM or SIGHUP arrives."""


def log(message: str) -> None:
    print(f"serve: {message}", file=sys.stderr, flush=True)


def default_venv() -> Path:
    return Path(os.environ.get("ARGILLA_VENV") or REPO_ROOT / ".venvs" / "argilla")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def install_signal_handlers() -> None:
    """Restore usable handlers: a background shell may have set SIGINT to ignored."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


def ignore_stop_signals() -> None:
    """Let the shutdown finish even if another signal arrives meanwhile."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Supervisor:
    """Starts child processes and stops them in reverse order."""

    log_dir: Path
    verbose: bool = False
    children: list[Child] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, always_log: bool = False
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        output: IO[bytes] | None = log_path.open("wb") if always_log or not self.verbose else None
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
        finally:
            if output is not None:
                output.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise ServeError(
                    f"{child.name} exited with code {child.process.returncode}\n{tail(child.log_path)}"
                )

    def stop_all(self) -> None:
        for child in reversed(self.children):
            stop_process(child.process)
        self.children.clear()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin is not None:
        process.stdin.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check_alive()
        if check():
            return
        time.sleep(0.1)
    raise ServeError(f"{what} not ready within {timeout:.0f} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_redis(supervisor: Supervisor, data_dir: Path) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServeError("redis-server is not on PATH: run tools/argilla/install.sh")
    port = free_port()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(redis_dir), "--daemonize", "no"]
    supervisor.start("redis", argv)
    wait_until(lambda: port_open(port), 15, "redis-server", supervisor)
    return f"redis://{HOST}:{port}/0"


def osmem_binary(venv: Path) -> Path:
    override = os.environ.get("OSMEM_SERVER_BIN")
    if override:
        return Path(override)
    found = sorted(venv.glob("lib/python*/site-packages/osmem_server/bin/osmem-server"))
    if not found:
        raise ServeError(f"osmem-server binary not found in {venv}: run tools/argilla/install.sh")
    return found[0]


def read_osmem_url(log_path: Path) -> str | None:
    if not log_path.exists():
        return None
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "url" in message:
            return str(message["url"])
    return None


def start_osmem(supervisor: Supervisor, venv: Path) -> str:
    argv = [str(osmem_binary(venv)), "--addr", f"{HOST}:0", "--parent-pid", str(os.getpid())]
    child = supervisor.start("osmem", argv, always_log=True)
    found: list[str] = []

    def ready() -> bool:
        url = read_osmem_url(child.log_path)
        if url:
            found.append(url)
        return bool(url)

    wait_until(ready, 30, "osmem-server", supervisor)
    return found[0]


def argilla_env(data_dir: Path, search_url: str, redis_url: str) -> dict[str, str]:
    home = data_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    python_path = os.pathsep.join(p for p in (str(PATCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
    env.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'argilla.db'}?check_same_thread=False",
        ARGILLA_SEARCH_ENGINE="opensearch",
        ARGILLA_ELASTICSEARCH=search_url,
        ARGILLA_REDIS_URL=redis_url,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=python_path,
        PYTHONUNBUFFERED="1",
        COLUMNS="160",
    )
    return env


def prepare_database(supervisor: Supervisor, python: Path, env: dict[str, str], reindex: bool) -> None:
    argv = [str(python), "-m", "argilla_local_setup", *(["--reindex"] if reindex else [])]
    child = supervisor.start("setup", argv, env)
    begin = time.monotonic()
    while True:
        try:
            code = child.process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            log(f"still migrating the database ({time.monotonic() - begin:.0f} s)")
    supervisor.children.remove(child)
    if code != 0:
        raise ServeError(f"database setup failed with code {code}\n{tail(child.log_path)}")


def me_answers(url: str) -> bool:
    request = urllib.request.Request(f"{url}/api/v1/me", headers={"X-Argilla-Api-Key": API_KEY})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch_argilla(supervisor: Supervisor, python: Path, env: dict[str, str], port: int) -> Child:
    """Start the server process; it imports argilla-server, then waits for ``release``."""
    argv = [str(python), "-m", "argilla_local_start", "--host", HOST, "--port", str(port)]
    return supervisor.start("argilla", argv, env)


def release(child: Child) -> None:
    assert child.process.stdin is not None
    child.process.stdin.write(b"start\n")
    child.process.stdin.flush()


def wait_for_argilla(supervisor: Supervisor, port: int, timeout: float) -> str:
    url = f"http://{HOST}:{port}"
    wait_until(lambda: me_answers(url), timeout, "argilla-server", supervisor)
    return url


def start_worker(supervisor: Supervisor, python: Path, env: dict[str, str]) -> None:
    supervisor.start("worker", [str(python), "-m", "argilla_server", "worker", "--num-workers", "1"], env)


@dataclass
class PhaseTimer:
    """Wall-clock time of each start-up phase."""

    started: float = field(default_factory=time.monotonic)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def measure(self, name: str, step: Callable[[], T]) -> T:
        begin = time.monotonic()
        result = step()
        self.phases.append((name, time.monotonic() - begin))
        return result

    def summary(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases)
        return f"{time.monotonic() - self.started:.1f} s ({parts})"


@contextmanager
def data_directory(requested: Path | None) -> Iterator[Path]:
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        yield requested.resolve()
        return
    temporary = Path(tempfile.mkdtemp(prefix="argilla-local-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def serve_until_stopped(supervisor: Supervisor, parent: int | None) -> None:
    """Block until a signal arrives, a child dies or (if given) the parent process exits."""
    while parent is None or os.getppid() == parent:
        supervisor.check_alive()
        time.sleep(0.5)
    log("parent process exited")


def start_stack(supervisor: Supervisor, args: argparse.Namespace, data_dir: Path, timer: PhaseTimer) -> str:
    """Start Redis, the search engine and argilla-server; return the server URL."""
    python = args.venv / "bin" / "python"
    existing_db = (data_dir / "home" / "argilla.db").exists()
    redis_url = timer.measure("redis", lambda: start_redis(supervisor, data_dir))
    search_url = timer.measure("osmem", lambda: start_osmem(supervisor, args.venv))
    env = argilla_env(data_dir, search_url, redis_url)
    port = args.port or free_port()
    server = launch_argilla(supervisor, python, env, port)
    log("migrating the database and starting argilla-server (30 s to 2.5 min; the first start is the slowest)")
    timer.measure("database", lambda: prepare_database(supervisor, python, env, reindex=existing_db))
    release(server)
    if args.worker:
        start_worker(supervisor, python, env)
    log("database ready; waiting for argilla-server to answer")
    return timer.measure("server", lambda: wait_for_argilla(supervisor, port, args.timeout))


def run(args: argparse.Namespace) -> int:
    parent = os.getppid()
    if not (args.venv / "bin" / "python").exists():
        log(f"no argilla venv at {args.venv}: run tools/argilla/install.sh")
        return 2
    with data_directory(args.data_dir) as data_dir:
        log_dir = data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor(log_dir, verbose=args.verbose)
        try:
            timer = PhaseTimer()
            url = start_stack(supervisor, args, data_dir, timer)
            log(f"started in {timer.summary()}; data in {data_dir}; logs in {log_dir}")
            print(f"READY {url}", flush=True)
            serve_until_stopped(supervisor, parent if args.exit_with_parent else None)
            return 0
        except ServeError as error:
            log(str(error))
            return 1
        except (KeyboardInterrupt, Terminated):
            log("stopping")
            return 0
        finally:
            ignore_stop_signals()
            supervisor.stop_all()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a local argilla-server 2.8 for development and tests.")
    parser.add_argument("--port", type=int, default=6900, help="HTTP port (default 6900; 0 picks a free one)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep data here (default: a temp dir)")
    parser.add_argument("--venv", type=Path, default=default_venv(), help="argilla venv (.venvs/argilla)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    parser.add_argument("--worker", action="store_true", help="also run an rq worker for background jobs")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process exits")
    parser.add_argument("--verbose", action="store_true", help="echo child output, not to log files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
