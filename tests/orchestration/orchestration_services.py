"""Throwaway PostgreSQL and Redis servers, run as real processes, and pipeline settings for the
orchestration tests. Both servers listen on 127.0.0.1 on a free port and are stopped afterwards."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALL_HINT = "run tools/services/install.sh (Debian postgresql and redis-server)"
PG_USER = "dagster"
PG_PASSWORD = "s3cret@/:pw"  # characters a URL would need escaped: the config must not break on them
PG_DB = "dagster"


class ServiceUnavailable(RuntimeError):
    """The service's binaries are missing or it cannot run here; the tests skip with this message."""


def timing_tool() -> ModuleType:
    """Load ``tools/services/backfill_timing.py``: its daemon, instance and workspace helpers."""
    spec = importlib.util.spec_from_file_location("backfill_timing", REPO / "tools" / "services" / "backfill_timing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop ``process`` with ``sig``, then kill it if it is still running after ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path | None:
    """Return the directory of ``initdb``/``postgres``: on PATH, or Debian's /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _major(p.parent.parent.name))
    return candidates[-1].parent if candidates else None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway PostgreSQL server with one database and one password-protected user."""

    bin_dir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = PG_USER
    password: str = PG_PASSWORD
    db_name: str = PG_DB

    def env(self) -> dict[str, str]:
        """Return the variables deploy/postgres/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def psql(self, sql: str) -> str:
        """Run ``sql`` with psql and return its unaligned output."""
        command = [str(self.bin_dir / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user]
        command += ["-d", self.db_name, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def _server_user() -> str | None:
    """Return the user to run the server as: ``postgres`` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise ServiceUnavailable(f"running as root and no 'postgres' user exists; {INSTALL_HINT}") from err
    return "postgres"


def _run_as(user: str | None, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, user=user, group=user, cwd=cwd, check=True, capture_output=True, text=True, timeout=120
    )


def _initdb(bin_dir: Path, root: Path, user: str | None) -> Path:
    data = root / "data"
    pwfile = root / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if user:
        shutil.chown(root, user, user)
        shutil.chown(pwfile, user, user)
    command = [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}"]
    command += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"]
    _run_as(user, command, cwd=root)
    pwfile.unlink()
    return data


def _pg_ready(bin_dir: Path, port: int) -> bool:
    command = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(command, check=False, timeout=10).returncode == 0


@contextmanager
def run_postgres(timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Run a PostgreSQL server in a fresh data directory (as ``postgres`` when root) for the block."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise ServiceUnavailable(f"PostgreSQL binaries (initdb, postgres) not found; {INSTALL_HINT}")
    user = _server_user()
    # Not under pytest's tmp_path: that is private to root, and the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="pref-assets-pg-"))
    try:
        data = _initdb(bin_dir, root, user)
        port = free_port()
        log = root / "postgres.log"
        command = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root)]
        command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with log.open("wb") as out:
            process = subprocess.Popen(command, user=user, group=user, cwd=root, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_until(lambda: _pg_ready(bin_dir, port), process, log, "postgres", timeout)
            server = PostgresServer(bin_dir=bin_dir, port=port)
            _create_database(server)
            yield server
        finally:
            _stop(process, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _create_database(server: PostgresServer) -> None:
    command = [str(server.bin_dir / "createdb"), "-h", server.host, "-p", str(server.port), "-U", server.user]
    env = {**os.environ, "PGPASSWORD": server.password}
    subprocess.run([*command, server.db_name], env=env, check=True, capture_output=True, timeout=30)


# ---------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisServer:
    """A running throwaway redis-server."""

    port: int
    host: str = "127.0.0.1"

    def url(self, db: int = 0) -> str:
        """Return the ``redis://`` URL of database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def run_redis(directory: Path, timeout: float = 20.0) -> Iterator[RedisServer]:
    """Run redis-server (no persistence, loopback only) for the block."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable(f"redis-server not found; {INSTALL_HINT}")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "redis.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: _redis_ready(port), process, log, "redis-server", timeout)
        yield RedisServer(port=port)
    finally:
        _stop(process)


# ---------------------------------------------------------------- pipeline settings


def instance_home(directory: Path, dagster_yaml: Path) -> Path:
    """Make ``directory`` a DAGSTER_HOME holding a copy of ``dagster_yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(dagster_yaml, directory / "dagster.yaml")
    return directory
