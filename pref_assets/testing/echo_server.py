"""A local HTTP server that refuses every request (400) with an error built from the request's headers, as some
proxies and debug servers do; ``HEAD`` answers 200 so that a client checking reachability goes on."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Message = Callable[[Mapping[str, str]], str]
Server = TypeVar("Server", bound=ThreadingHTTPServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Serve ``server`` from a thread until the block ends, then shut it down and close its socket."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def refusing_server(message: Message) -> Iterator[str]:
    """Serve on a free loopback port until the block ends; yield the server's base URL. Every GET, POST and PUT
    is answered 400 with ``{"error": m, "detail": m}``, ``m = message(request headers)``."""

    class Handler(_Refusing):
        build = staticmethod(message)

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


class _Refusing(BaseHTTPRequestHandler):
    build: Message

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._refuse()

    do_PUT = do_POST

    def _refuse(self) -> None:
        message = self.build(self.headers)
        body = json.dumps({"error": message, "detail": message}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return
