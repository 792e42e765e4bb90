"""The keep-alive transport against a scripted HTTP/1.1 server on loopback (real sockets, raw bytes)."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import trustme

from pref_assets.clients.llm import ChatClient, ChatRequest, EndpointConfigError, default_transport
from pref_assets.clients.transport import KeepAliveTransport, ResponseTooLargeError

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": "ok"}'
Reply = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Script:
    """Answers the n-th request on a connection with ``reply(n, writer)``; a False return closes it."""

    reply: Reply
    connections: int = 0
    open_now: int = 0
    peak_open: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        try:
            n = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                keep = await self.reply(n, writer)
                await writer.drain()
                n += 1
                if not keep:
                    return
        finally:
            self.open_now -= 1
            writer.close()


def serve(reply: Reply, check: Callable[[str, Script], Awaitable[None]], tls: ssl.SSLContext | None = None) -> Script:
    script = Script(reply)

    async def main() -> None:
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await check(f"{'https' if tls else 'http'}://127.0.0.1:{port}", script)

    asyncio.run(main())
    return script


def answer(raw: bytes, *, keep: bool = True) -> Reply:
    async def reply(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        return keep

    return reply


def delayed(seconds: float) -> Reply:
    async def reply(_: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(seconds)
        writer.write(OK)
        return True

    return reply


async def post(transport: httpx.AsyncBaseTransport, url: str, body: bytes = b"{}", **timeouts: float) -> httpx.Response:
    timeout = httpx.Timeout(5.0, read=timeouts.get("read", 5.0), pool=timeouts.get("pool", 5.0))
    request = httpx.Request(
        "POST", url + "/v1/chat/completions", content=body, extensions={"timeout": timeout.as_dict()}
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


def test_content_length_answers_reuse_one_connection_and_the_request_goes_out_whole() -> None:
    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        for _ in range(3):
            response = await post(transport, url, b'{"x": 1}')
            assert response.status_code == 200 and response.json() == {"a": "ok"}
        await transport.aclose()

    script = serve(answer(OK), check)
    assert script.connections == 1
    head, body = script.requests[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"\r\nContent-Length: 8" in head
    assert body == b'{"x": 1}'


def test_chunked_bodies_with_extensions_and_trailers_are_joined() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        assert (await post(transport, url)).content == b"hello world"
        assert (await post(transport, url)).content == b"hello world"
        await transport.aclose()

    assert serve(answer(raw), check).connections == 1


def test_a_body_ended_by_close_is_read_to_the_end_and_the_connection_not_reused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"

    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        assert (await post(transport, url)).content == b"until the end"
        assert (await post(transport, url)).content == b"until the end"

    assert serve(answer(raw, keep=False), check).connections == 2


def test_interim_and_bodiless_answers() -> None:
    async def reply(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK if n == 0 else b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        assert (await post(transport, url)).json() == {"a": "ok"}
        response = await post(transport, url)
        assert response.status_code == 204 and response.content == b""

    serve(reply, check)


def test_a_keep_alive_connection_the_server_dropped_is_replaced_once() -> None:
    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        await post(transport, url)
        await asyncio.sleep(0.05)  # the server has closed the idle connection by now
        assert (await post(transport, url)).status_code == 200

    script = serve(answer(OK, keep=False), check)  # closes without saying Connection: close
    assert script.connections == 2 and len(script.requests) == 2


def test_a_reused_connection_closed_before_any_answer_is_retried_on_a_fresh_one() -> None:
    async def reply(n: int, writer: asyncio.StreamWriter) -> bool:
        if n == 0:
            writer.write(OK)
        return n == 0  # the second request on a connection is read, then the connection drops unanswered

    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        await post(transport, url)
        assert (await post(transport, url)).json() == {"a": "ok"}

    script = serve(reply, check)
    assert script.connections == 2 and len(script.requests) == 3


def test_a_connection_lost_in_the_body_is_an_error_not_a_short_answer() -> None:
    async def check(url: str, script: Script) -> None:
        with pytest.raises(httpx.ReadError):
            await post(KeepAliveTransport(), url)

    serve(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", keep=False), check)


def test_timeouts_and_refused_connections_raise_httpx_errors() -> None:
    async def check(url: str, script: Script) -> None:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await post(KeepAliveTransport(), url, read=0.1)
        assert caught.value.request.url.path == "/v1/chat/completions"

    serve(delayed(1.0), check)

    async def refused() -> None:
        with pytest.raises(httpx.ConnectError):
            await post(KeepAliveTransport(), "http://127.0.0.1:9")

    asyncio.run(refused())


def test_a_cancelled_request_gives_back_its_slot_and_drops_its_connection() -> None:
    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport(max_connections=1)
        first = asyncio.create_task(post(transport, url))
        await asyncio.sleep(0.05)
        first.cancel()
        assert (await post(transport, url, pool=0.2)).status_code == 200  # the only slot is free again
        with pytest.raises(httpx.PoolTimeout):  # and a busy slot makes the next request wait, then give up
            await asyncio.gather(post(transport, url), post(transport, url, pool=0.05))

    script = serve(delayed(0.1), check)
    assert script.connections == 2  # the cancelled request's connection was not reused


def test_an_http10_answer_closes_the_connection_unless_kept_alive() -> None:
    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        for _ in range(2):
            assert (await post(transport, url)).content == b"ok"

    plain = serve(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), check)
    kept = serve(answer(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"), check)
    assert (plain.connections, kept.connections) == (2, 1)


def test_connections_per_origin_are_bounded() -> None:
    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport(max_connections=2)
        responses = await asyncio.gather(*(post(transport, url) for _ in range(10)))
        assert all(r.status_code == 200 for r in responses)
        await transport.aclose()

    script = serve(delayed(0.02), check)
    assert script.peak_open == 2 and len(script.requests) == 10


def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Return a server context with a certificate for 127.0.0.1 and a client context that trusts its authority."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    return server_context, trusted


def test_tls_is_verified_against_the_given_authority() -> None:
    server_context, trusted = tls_pair()

    async def check(url: str, script: Script) -> None:
        assert (await post(KeepAliveTransport(verify=trusted), url)).json() == {"a": "ok"}
        with pytest.raises(httpx.ConnectError):
            await post(KeepAliveTransport(), url)

    serve(answer(OK), check, tls=server_context)


def test_a_corrupt_tls_record_is_a_read_error() -> None:
    server_context, trusted = tls_pair()

    async def corrupt(_: int, writer: asyncio.StreamWriter) -> bool:
        os.write(writer.get_extra_info("socket").fileno(), b"\x17\x03\x03\x00\x10" + b"x" * 16)  # past TLS
        return True

    async def check(url: str, script: Script) -> None:
        with pytest.raises(httpx.ReadError):
            await post(KeepAliveTransport(verify=trusted), url)

    serve(corrupt, check, tls=server_context)


def test_bytes_that_arrive_on_an_idle_connection_retire_it() -> None:
    async def reply(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")  # then the server closes
        return False

    async def check(url: str, script: Script) -> None:
        transport = KeepAliveTransport()
        await post(transport, url)
        await asyncio.sleep(0.05)
        assert (await post(transport, url)).status_code == 200

    assert serve(reply, check).connections == 2


def test_chat_client_sends_its_key_and_uses_the_proxy_transport_when_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    completion = b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}'
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(completion), completion)

    async def check(url: str, script: Script) -> None:
        async with ChatClient(url + "/v1", api_key="sk-test") as client:
            result = await client.complete(ChatRequest("m", [{"role": "user", "content": "hé"}]))
        assert result.ok and result.text == "hi"

    script = serve(answer(raw), check)
    assert b"\r\nAuthorization: Bearer sk-test" in script.requests[0] and "hé".encode() in script.requests[0]

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert isinstance(default_transport("https://api.example.com/v1", 4), httpx.AsyncHTTPTransport)
    assert isinstance(default_transport("http://api.example.com/v1", 4), KeepAliveTransport)


def test_a_socks_proxy_without_its_package_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed: the proxy would work")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        EndpointConfigError, match=r"socks5://.*Install httpx\[socks\], or exclude the host with NO_PROXY"
    ):
        default_transport("http://llm.example.com/v1", 4)


def test_a_header_value_with_a_line_break_is_never_sent_and_never_shown() -> None:
    request = httpx.Request(
        "POST", "http://llm.test/v1/chat/completions", headers={"Authorization": "Bearer sk-1\nX: y"}
    )

    async def go() -> None:
        await KeepAliveTransport().handle_async_request(request)

    with pytest.raises(httpx.LocalProtocolError, match="header Authorization holds a line break") as info:
        asyncio.run(go())
    assert "sk-1" not in str(info.value)


def test_a_body_over_the_limit_is_not_read_further_whatever_its_framing() -> None:
    huge = 64 * 1024 * 1024
    written: list[int] = []

    async def announced(_: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % huge + b"x" * 1024)
        return True

    async def endless(chunked: bool, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n" + (b"Transfer-Encoding: chunked\r\n" if chunked else b"") + b"\r\n")
        block, size = b"y" * 65536, 0
        try:
            while size < huge:
                writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                await writer.drain()
                size += len(block)
        except ConnectionError:
            pass
        finally:
            written.append(size)
        return False

    sent: list[int] = []

    def replies() -> list[Reply]:
        async def chunked(_: int, writer: asyncio.StreamWriter) -> bool:
            return await endless(True, writer)

        async def closed(_: int, writer: asyncio.StreamWriter) -> bool:
            return await endless(False, writer)

        return [announced, chunked, closed]

    for reply in replies():

        async def check(url: str, script: Script) -> None:
            transport = KeepAliveTransport(max_response_bytes=1 << 20)
            with pytest.raises(ResponseTooLargeError, match=r"larger than max_response_bytes \(1048576 bytes\)"):
                await post(transport, url)
            await transport.aclose()

        sent.append(serve(reply, check).connections)
    assert sent == [1, 1, 1]
    assert len(written) == 2 and max(written) < huge // 4  # the client stopped reading; the server could not go on
