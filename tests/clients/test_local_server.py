"""The embedded endpoint is driven as the serial server it is: one streamed request at a time, so a request waiting
for its turn is not timed out (and sent again) while the server works on another."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pref_assets.clients.local_server import LocalModelServer
from pref_assets.clients.runner import run_calls
from pref_assets.core.calls import Call
from pref_assets.defs.resources import LLMResource
from pref_assets.settings import EndpointSettings
from pref_assets.testing.echo_server import serving

SERVE_S = 0.6


class _SerialHandler(BaseHTTPRequestHandler):
    """Like llama.cpp's server: one lock around the model; answers streamed when asked."""

    server: _SerialServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        with self.server.lock:
            time.sleep(SERVE_S)
        text = f"answer to {body['messages'][-1]['content']}"
        if body.get("stream"):
            chunks = [{"choices": [{"delta": {"content": word + " "}, "finish_reason": None}]} for word in text.split()]
            chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._reply("text/event-stream", data.encode())
        else:
            choice = {"message": {"content": text}, "finish_reason": "stop"}
            self._reply("application/json", json.dumps({"choices": [choice]}).encode())

    def _reply(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up waiting
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _SerialServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SerialHandler)
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []


@contextmanager
def serial_server() -> Iterator[_SerialServer]:
    with serving(_SerialServer()) as server:
        yield server


def test_the_embedded_endpoint_gets_one_streamed_request_at_a_time_and_says_it_is_the_bottleneck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serial_server() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        monkeypatch.setattr(LocalModelServer, "start", lambda self: url)
        # configured for 3 in flight and a timeout shorter than two answers in a row
        endpoint = EndpointSettings(name="local", base_url="embedded", max_concurrency=3, timeout_s=1.0, max_attempts=2)
        llm = LLMResource(endpoints=[endpoint])
        calls = [Call("local", "m", ({"role": "user", "content": f"q{i}"},)) for i in range(4)]
        lines: list[str] = []
        results = run_calls(calls, llm.client, log=lines.append, interval=0.2, slow_turn=0.9)
    assert all(r.ok and r.attempts == 1 for r in results), [r.error for r in results]
    assert [r.text for r in results] == [f"answer to q{i} " for i in range(4)]
    assert len(server.bodies) == 4 and all(b["stream"] is True for b in server.bodies)
    warnings = [line for line in lines if "bottleneck" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("endpoint local is the bottleneck: requests waited up to ")
    assert "embedded llama.cpp server answers one request at a time" in warnings[0]
