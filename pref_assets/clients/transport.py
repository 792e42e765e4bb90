"""A lean HTTP/1.1 keep-alive transport for httpx, built for many small requests to few endpoints.

httpx's default transport (httpcore) spends about 2 ms of CPU per request on pool bookkeeping and protocol
state machines; at hundreds of requests in flight that, not the network, bounds the throughput. This
transport keeps idle connections per origin in a stack (no pool scan), writes the request in one piece and
parses the response head itself. It speaks HTTP/1.1 with Content-Length, chunked or close-delimited bodies,
TLS, and httpx's connect/read/write/pool timeouts, and it raises httpx's own exceptions, so the client above
it cannot tell the difference. No proxies, no HTTP/2: ``ChatClient`` keeps httpx's default transport when a
proxy is configured in the environment. A response body longer than ``max_response_bytes`` is not read
further: the connection is dropped and ``ResponseTooLargeError`` raised.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx

_HEAD_LIMIT = 1 << 20
_READ_SIZE = 1 << 16
DEFAULT_MAX_RESPONSE_BYTES = 8 << 20
_NO_BODY_STATUS = {204, 304}
_Origin = tuple[str, str, int]


class ResponseTooLargeError(Exception):
    """A response body was longer than the limit; it was not read to the end (and retrying will not shrink it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the response body is larger than max_response_bytes ({limit} bytes); reading stopped")
        self.limit = limit


def request_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """Return ``timeout`` seconds for a whole request, of which connecting takes at most 10 (an ``httpx.Timeout``
    is kept as it is)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(10.0, timeout))


def check_size(size: int, limit: int | None) -> None:
    """Raise ``ResponseTooLargeError`` when ``size`` bytes are over ``limit`` (None: no limit)."""
    if limit is not None and size > limit:
        raise ResponseTooLargeError(limit)


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False

    def usable(self) -> bool:
        """An idle connection is usable while open and silent: bytes that arrived while it was idle (a server's
        408 before closing, say) would be read as the answer to the next request."""
        unread = self.reader._buffer  # StreamReader has no public view of the bytes it holds
        return not self.writer.is_closing() and not self.reader.at_eof() and not unread

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class _Head:
    status: int
    headers: list[tuple[bytes, bytes]]
    http10: bool

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(slots=True)
class _Origins:
    max_connections: int
    idle: dict[_Origin, list[_Connection]] = field(default_factory=lambda: defaultdict(list))
    slots: dict[_Origin, asyncio.Semaphore] = field(default_factory=dict)

    def slot(self, origin: _Origin) -> asyncio.Semaphore:
        if origin not in self.slots:
            self.slots[origin] = asyncio.Semaphore(self.max_connections)
        return self.slots[origin]


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """Sends each request on an idle keep-alive connection to its origin, or on a new one.

    At most ``max_connections`` connections per origin are open at once; a request that finds none free
    waits (up to the pool timeout). A reused connection the server had already closed (nothing of the
    response read) is replaced by a fresh one once, as keep-alive clients do.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """``verify``: an SSL context; True: SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi (as httpx);
        False: no verification. ``max_response_bytes``: the longest body read (None: no limit)."""
        self._origins = _Origins(max_connections)
        self._max_body = max_response_bytes
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        timeouts = request.extensions.get("timeout", {})
        payload = _encode(request, await request.aread())
        try:
            async with self._slot(origin, timeouts.get("pool")):
                try:
                    return await self._send(origin, payload, request, timeouts, fresh=False)
                except _StaleConnection:
                    return await self._send(origin, payload, request, timeouts, fresh=True)
        except _StaleConnection as err:
            raise httpx.RemoteProtocolError(str(err), request=request) from err
        except httpx.TransportError as err:
            err.request = request
            raise

    async def aclose(self) -> None:
        for stack in self._origins.idle.values():
            for conn in stack:
                conn.close()
            stack.clear()

    @asynccontextmanager
    async def _slot(self, origin: _Origin, timeout: float | None) -> Any:
        slot = self._origins.slot(origin)
        if slot.locked():
            async with _Deadline(timeout, httpx.PoolTimeout, "no free connection in time"):
                await slot.acquire()
        else:
            await slot.acquire()
        try:
            yield
        finally:
            slot.release()

    async def _checkout(self, origin: _Origin, timeout: float | None, *, fresh: bool) -> _Connection:
        stack = self._origins.idle[origin]
        while stack and not fresh:
            conn = stack.pop()
            if conn.usable():
                return conn
            conn.close()
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        try:
            async with _Deadline(timeout, httpx.ConnectTimeout, f"connecting to {host}:{port} took too long"):
                reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=_HEAD_LIMIT)
        except OSError as err:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {err}") from err
        return _Connection(reader, writer)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._ssl = self._verify
            else:
                self._ssl = _default_context()
                if not self._verify:
                    self._ssl.check_hostname = False
                    self._ssl.verify_mode = ssl.CERT_NONE
        return self._ssl

    async def _send(
        self,
        origin: _Origin,
        payload: bytes,
        request: httpx.Request,
        timeouts: dict[str, float | None],
        *,
        fresh: bool,
    ) -> httpx.Response:
        conn = await self._checkout(origin, timeouts.get("connect"), fresh=fresh)
        try:
            head, body, keep = await self._round_trip(conn, payload, request.method, timeouts)
        except BaseException:
            conn.close()
            raise
        if keep:
            conn.reused = True
            self._origins.idle[origin].append(conn)
        else:
            conn.close()
        return httpx.Response(head.status, headers=head.headers, content=body, request=request)

    async def _round_trip(
        self, conn: _Connection, payload: bytes, method: str, timeouts: dict[str, float | None]
    ) -> tuple[_Head, bytes, bool]:
        """Write the request on ``conn`` and read the response; return its head, its body and whether the
        connection can carry another request."""
        try:
            conn.writer.write(payload)
            if conn.writer.transport.get_write_buffer_size():  # the socket did not take it all at once
                async with _Deadline(timeouts.get("write"), httpx.WriteTimeout, "sending the request took too long"):
                    await conn.writer.drain()
        except OSError as err:  # ConnectionError, ssl.SSLError, EHOSTUNREACH...
            if conn.reused and isinstance(err, ConnectionError):
                raise _StaleConnection(f"the server closed the connection: {err!r}") from err
            raise httpx.WriteError(f"sending the request failed: {err!r}") from err
        # One deadline for the whole answer: its head arrives when the model is done, the body right after.
        async with _Deadline(timeouts.get("read"), httpx.ReadTimeout, "no complete response in time"):
            try:
                head = await _read_head(conn.reader)
            except (OSError, asyncio.IncompleteReadError) as err:
                closed = isinstance(err, ConnectionError | asyncio.IncompleteReadError)
                if conn.reused and closed and not getattr(err, "partial", b""):
                    raise _StaleConnection(f"the server closed the connection: {err!r}") from err
                raise _transport_error(err) from err
            try:
                body, delimited = await _read_body(conn.reader, head, method, self._max_body)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                raise httpx.ReadError(f"the connection broke in the response body: {err!r}") from err
        return head, body, delimited and _keeps_alive(head)


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before any of the response arrived."""


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as err:
            raise httpx.RemoteProtocolError("response head too large") from err
        head = _parse_head(raw)
        if not 100 <= head.status < 200:
            return head


def _parse_head(raw: bytes) -> _Head:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line: {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:100]!r}")
        headers.append((name.strip(), value.strip()))
    return _Head(int(parts[1]), headers, parts[0] == b"HTTP/1.0")


async def _read_body(reader: asyncio.StreamReader, head: _Head, method: str, limit: int | None) -> tuple[bytes, bool]:
    """Return the body and whether its end was delimited (so the connection can carry another request); a body
    over ``limit`` bytes raises ``ResponseTooLargeError`` before more of it is read."""
    if method == "HEAD" or head.status in _NO_BODY_STATUS:
        return b"", True
    if b"chunked" in (head.header(b"transfer-encoding") or b"").lower():
        return await _read_chunked(reader, limit), True
    length = head.header(b"content-length")
    if length is None:
        return await _read_to_end(reader, limit), False
    if not length.isdigit():
        raise httpx.RemoteProtocolError(f"bad Content-Length: {length[:40]!r}")
    check_size(int(length), limit)
    return await reader.readexactly(int(length)), True


async def _read_to_end(reader: asyncio.StreamReader, limit: int | None) -> bytes:
    chunks, size = [], 0
    while chunk := await reader.read(_READ_SIZE):
        size += len(chunk)
        check_size(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_chunked(reader: asyncio.StreamReader, limit: int | None) -> bytes:
    chunks, received = [], 0
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as err:
            raise httpx.RemoteProtocolError(f"bad chunk size: {size_line[:40]!r}") from err
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        received += size
        check_size(received, limit)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _default_context() -> ssl.SSLContext:
    """Trust SSL_CERT_FILE / SSL_CERT_DIR when set (a private authority), else certifi's bundle, as httpx does."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return ssl.create_default_context(cafile=certifi.where())


def _keeps_alive(head: _Head) -> bool:
    connection = (head.header(b"connection") or b"").lower()
    return b"keep-alive" in connection if head.http10 else b"close" not in connection


def _origin(url: httpx.URL) -> _Origin:
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _encode(request: httpx.Request, body: bytes) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    lines += [b"%s: %s" % (k, v) for k, v in request.headers.raw]
    head = b"\r\n".join(lines)
    if head.count(b"\n") != len(lines) - 1 or b"\r" in head.replace(b"\r\n", b""):
        # a line break inside a header value would end the head early (and could inject headers); the value may be
        # a secret, so only the name is told
        names = [k.decode("latin-1") for k, v in request.headers.raw if b"\r" in v or b"\n" in v]
        raise httpx.LocalProtocolError(f"header {', '.join(names) or 'line'} holds a line break; request not sent")
    return head + b"\r\n\r\n" + body


def _transport_error(err: BaseException) -> httpx.TransportError:
    if isinstance(err, asyncio.IncompleteReadError):
        return httpx.RemoteProtocolError("the server closed the connection without a complete response")
    return httpx.ReadError(f"{type(err).__name__}: {err}")


class _Deadline:
    """``asyncio.timeout`` that raises an httpx timeout error (``None``: no limit)."""

    __slots__ = ("_error", "_message", "_scope", "_timeout")

    def __init__(self, timeout: float | None, error: type[httpx.TimeoutException], message: str) -> None:
        self._timeout = timeout
        self._error = error
        self._message = message

    async def __aenter__(self) -> None:
        self._scope = asyncio.timeout(self._timeout)
        await self._scope.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._scope.__aexit__(*exc)
        except TimeoutError as err:
            raise self._error(self._message) from err
