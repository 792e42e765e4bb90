"""Start and stop a real local argilla-server 2.8 for tests.

The server runs from its own venv (``tools/argilla/install.sh`` creates it) through
``tools/argilla/serve.py``, which also runs Redis and an in-memory OpenSearch-compatible
search engine. Everything lives in a temporary directory and is gone after the block.

    from pref_assets.testing.argilla_server import INSTALL_HINT, argilla_available, run_argilla_server

    if not argilla_available():
        pytest.skip(INSTALL_HINT)
    with run_argilla_server() as server:
        httpx.get(f"{server.url}/api/v1/me", headers=server.headers)

Standard library only (``ArgillaServer.client`` imports httpx when called).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = REPO_ROOT / "tools" / "argilla" / "serve.py"
INSTALL_SCRIPT = "tools/argilla/install.sh"
DEFAULT_API_KEY = "argilla.apikey"
DEFAULT_WORKSPACE = "argilla"
READY_PREFIX = "READY "
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
INSTALL_HINT = f"no local argilla-server installed: run {INSTALL_SCRIPT}"


class ArgillaServerError(RuntimeError):
    """The local argilla-server could not be started."""


@dataclass(frozen=True)
class ArgillaServer:
    """A running local argilla-server."""

    url: str
    api_key: str = DEFAULT_API_KEY
    workspace: str = DEFAULT_WORKSPACE

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Argilla-Api-Key": self.api_key}

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client with the API key set and ``base_url`` = ``<url>/api/v1``."""
        import httpx

        return httpx.Client(base_url=f"{self.url}/api/v1", headers=self.headers, timeout=timeout)


def default_venv() -> Path:
    """The argilla venv: ``$ARGILLA_VENV`` or ``<repo>/.venvs/argilla`` (as install.sh)."""
    return Path(os.environ.get("ARGILLA_VENV") or REPO_ROOT / ".venvs" / "argilla")


def _has_package(venv: Path, package: str) -> bool:
    return any(venv.glob(f"lib/python*/site-packages/{package}/__init__.py"))


def argilla_available(venv: Path | None = None) -> bool:
    """Whether install.sh has set up the venv, the search engine and redis-server."""
    venv = venv or default_venv()
    return (
        SERVE_SCRIPT.exists()
        and (venv / "bin" / "python").exists()
        and _has_package(venv, "argilla_server")
        and _has_package(venv, "osmem_server")
        and shutil.which("redis-server") is not None
    )


def _last_lines(path: Path, count: int = 40) -> str:
    if not path.exists():
        return ""
    with path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=count))


def _ready_url(path: Path) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()
    return None


def _spawn(python: Path, port: int, venv: Path, log_path: Path, timeout: float) -> subprocess.Popen[bytes]:
    argv = [str(python), str(SERVE_SCRIPT), "--port", str(port), "--venv", str(venv)]
    argv += ["--timeout", str(timeout), "--exit-with-parent"]
    with log_path.open("wb") as output:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = _ready_url(log_path)
        if url:
            return url
        if process.poll() is not None:
            raise ArgillaServerError(f"argilla-server exited with code {process.returncode}:\n{_last_lines(log_path)}")
        time.sleep(0.2)
    raise ArgillaServerError(f"argilla-server not ready within {timeout:.0f} s:\n{_last_lines(log_path)}")


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop serve.py (which stops its children), then anything left in its group."""
    _signal_group(process, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    _signal_group(process, signal.SIGKILL)
    process.wait()


@contextmanager
def run_argilla_server(
    port: int = 0, venv: Path | None = None, *, timeout: float = START_TIMEOUT_S
) -> Iterator[ArgillaServer]:
    """Run a fresh local argilla-server (default user, API key ``argilla.apikey``).

    ``port=0`` lets serve.py pick a free port. Raises ``ArgillaServerError`` (with the last lines of
    the server's output) when it is not installed or does not become ready in time.
    """
    venv = venv or default_venv()
    if not argilla_available(venv):
        raise ArgillaServerError(f"{INSTALL_HINT} (looked for the venv at {venv})")
    with tempfile.TemporaryDirectory(prefix="argilla-server-") as tmp:
        log_path = Path(tmp) / "serve.log"
        process = _spawn(venv / "bin" / "python", port, venv, log_path, timeout)
        try:
            url = _wait_ready(process, log_path, timeout)
            yield ArgillaServer(url=url)
        finally:
            _stop(process)
