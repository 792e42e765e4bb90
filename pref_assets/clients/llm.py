"""An async OpenAI-compatible chat-completions client on httpx, with bounded concurrency and retries."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from pref_assets.clients.cache import RequestCache, request_key
from pref_assets.clients.limiter import CircuitOpenError, Limiter
from pref_assets.clients.retry import RetryPolicy, retry_after_seconds
from pref_assets.clients.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    KeepAliveTransport,
    ResponseTooLargeError,
    check_size,
    request_timeout,
)
from pref_assets.core.secrets import Secrets, secret_fingerprint
from pref_assets.core.text import encodable, encodable_values

HTTP_ERROR = "http_error"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
BAD_RESPONSE = "bad_response"
INVALID_REQUEST = "invalid_request"
CIRCUIT_OPEN = "circuit_open"
REFUSED = "budget_exhausted"
RESPONSE_TOO_LARGE = "response_too_large"
PROBE_MESSAGES = ({"role": "user", "content": "Say OK."},)
Admit = Callable[[], str | None]
USER_AGENT = "pref-assets"
_SIZE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# Fields a request can go without, and the words by which a server's 400/422 names each: without
# response_format the judge is asked in the prompt only (its parser reads JSON and free text); without seed a
# re-ask is just another sample.
_OPTIONAL_FIELDS = {
    "response_format": re.compile(r"response_format|json_schema|json_object|grammar|guided", re.I),
    "seed": re.compile(r"\bseed\b", re.I),
}


class EndpointConfigError(ValueError):
    """An endpoint cannot be reached as configured; retrying will not help."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat-completions call; ``params`` holds generation parameters (max_tokens, temperature...)."""

    model: str
    messages: Sequence[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """Return the JSON body sent to ``/chat/completions``."""
        body = {"model": self.model, "messages": list(self.messages), **self.params}
        if self.response_format is not None:
            body["response_format"] = self.response_format
        return body


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The outcome of one call: the answer, or an error kind and message."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    error_kind: str | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Return whether the call produced an answer."""
        return self.error_kind is None


class ChatClient:
    """Calls one endpoint; at most ``max_concurrency`` requests in flight; retries per ``retry``.

    ``timeout``: seconds for a whole answer (connecting within at most 10 of them), or an ``httpx.Timeout``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float | httpx.Timeout = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        cache: RequestCache | None = None,
        endpoint_id: str | None = None,
        limiter: Limiter | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        stream: bool = False,
        secrets: Secrets | None = None,
    ) -> None:
        self._transport = transport or default_transport(base_url, max_concurrency, max_response_bytes)
        self._max_body = max_response_bytes
        # Stream answers (server-sent events, read whole): a server that stops generating when the client goes away
        # (llama.cpp's server does so only for streams) keeps no work behind a request that timed out.
        self.stream = stream
        self._url = httpx.URL(base_url.rstrip("/") + "/chat/completions")
        self._headers = _headers(api_key)
        # Every configured secret (this key, and ``secrets``: other keys and tokens) is masked in whatever an
        # answer or an error brings back, before it is cut, cached, stored or logged.
        self._secrets = Secrets.of(api_key) + (secrets or Secrets())
        # Answers cached under one key are never read with another (a wrong key must not pass on cached answers).
        self._namespace = secret_fingerprint(api_key)
        self._extensions = {"timeout": request_timeout(timeout).as_dict()}
        self._limiter = limiter or Limiter(max_concurrency=max_concurrency)
        # the longest a request waited for its turn (the limiter's window, pacing, a probe), in seconds, and what
        # the step log adds when that wait makes this endpoint the bottleneck
        self.longest_wait = 0.0
        self.bottleneck_note = ""
        self._retry = retry or RetryPolicy()
        self._cache = cache
        self._endpoint_id = endpoint_id or base_url
        # Optional request fields this server rejected (400/422 naming them), with its message: later requests go
        # without them. The cache key stays that of the request as configured.
        self.dropped: dict[str, str] = {}

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (and the cache connection)."""
        await self._transport.aclose()
        if self._cache is not None:
            self._cache.close()

    async def complete_many(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Return one result per request, in order; failures are results, never exceptions."""
        return list(await asyncio.gather(*(self.complete(r) for r in requests)))

    async def complete(self, request: ChatRequest, *, admit: Admit | None = None) -> ChatResult:
        """Answer from the cache, or send the request (retrying what the policy allows) and store it.

        ``admit`` is asked right before each attempt is sent; a reason it returns refuses the request.
        """
        if self._cache is None:
            return await self._send(request, admit)
        key = request_key(self._endpoint_id, request.body(), self._namespace)
        stored = self._cache.get(key)
        if stored is not None:
            return ChatResult(**stored, latency_s=0.0, attempts=0, cached=True)
        result = await self._send(request, admit)
        if result.ok:
            self._cache.put(key, self._endpoint_id, request.model, _cacheable(result))
        return result

    async def _send(self, request: ChatRequest, admit: Admit | None) -> ChatResult:
        started = time.perf_counter()
        others = limited = 0
        estimate = estimate_tokens(request)
        ticket = _Ticket(request.model)
        while True:
            try:
                queued = time.perf_counter()
                async with self._limiter.slot(estimate):
                    self.longest_wait = max(self.longest_wait, time.perf_counter() - queued)
                    refusal = admit() if admit is not None else None
                    if refusal is not None:
                        return _Reply.failed(REFUSED, refusal, retryable=False).result(0.0, others + limited)
                    if ticket.since is None:
                        ticket.since = self._limiter.successes
                    reply = await self._attempt(request)
                    self._report(reply, estimate, ticket)
            except CircuitOpenError as err:
                reply = _Reply.failed(CIRCUIT_OPEN, str(err), retryable=False)
            limited += reply.status == 429
            others += reply.status != 429
            spent = others >= self._retry.max_attempts or limited >= self._retry.max_rate_limited
            if not reply.retryable or spent:
                return reply.result(time.perf_counter() - started, others + limited)
            await asyncio.sleep(self._retry.delay(others + limited, reply.retry_after))

    def _report(self, reply: _Reply, estimate: int, ticket: _Ticket) -> None:
        if reply.error_kind is None:
            self._limiter.record_success(sum(reply.usage), estimate, reply.headers)
        elif reply.status == 429:
            self._limiter.record_rate_limited(reply.retry_after, reply.headers)
        elif reply.unreachable:
            self._limiter.record_unreachable(str(reply.error))
        elif reply.retryable:
            probe = functools.partial(self.probe, ticket.model)
            self._limiter.record_failure(str(reply.error), request=ticket, since=ticket.since or 0, probe=probe)

    async def probe(self, model: str) -> str | None:
        """Ask the endpoint a minimal question (one token; outside the limiter, never cached) and return None if it
        answered 2xx, else what went wrong, naming the endpoint."""
        reply = await self._attempt(ChatRequest(model, PROBE_MESSAGES, {"max_tokens": 1}))
        if reply.error_kind is None or 200 <= reply.status < 300:
            return None
        return f"a health probe to {self._url} (model {model}) failed too: {reply.error}"

    async def _attempt(self, request: ChatRequest) -> _Reply:
        reply = await self._exchange(request)
        if not self._secrets:
            return reply
        # a server that echoes the key ("invalid token sk-...") must not put it in rows, metadata or logs
        text = self._secrets.mask(reply.text) if reply.text else reply.text
        return replace(reply, text=text, error=self._secrets.mask(reply.error) if reply.error else None)

    async def _exchange(self, request: ChatRequest) -> _Reply:
        body = request.body()
        for name in self.dropped:
            body.pop(name, None)
        if self.stream:
            body["stream"] = True
        try:
            response = _masked(await self._post(body), self._secrets)
        except ResponseTooLargeError as err:  # the same request would get the same answer
            return _Reply.failed(RESPONSE_TOO_LARGE, str(err), retryable=False)
        except httpx.TimeoutException as err:
            failed = _Reply.failed(TIMEOUT, f"{type(err).__name__}: no answer in time", retryable=True)
            return replace(failed, unreachable=isinstance(err, httpx.ConnectTimeout))
        except httpx.LocalProtocolError as err:  # the request cannot be written as it is; sending again won't help
            return _Reply.failed(INVALID_REQUEST, f"{type(err).__name__}: {err}", retryable=False)
        except httpx.TransportError as err:
            failed = _Reply.failed(CONNECTION_ERROR, f"{type(err).__name__}: {err}", retryable=True)
            return replace(failed, unreachable=isinstance(err, httpx.ConnectError))
        if response.status_code != 200:
            message = _error_message(response)
            rejected = _rejected_optional_field(body, response.status_code, message)
            if rejected is not None:
                self.dropped[rejected] = self._secrets.mask(message)
                return await self._exchange(request)
            return replace(
                _Reply.failed(
                    HTTP_ERROR,
                    f"HTTP {response.status_code}: {message}",
                    retryable=self._retry.should_retry(response.status_code),
                    retry_after=retry_after_seconds(response.headers),
                ),
                status=response.status_code,
                headers=_rate_headers(response),
            )
        return _parse_completion(_joined_stream(response) if body.get("stream") else response)

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        """POST one body straight to the transport: an httpx request and response, without the per-request
        bookkeeping of ``httpx.AsyncClient`` (cookies, redirects, URL merging) that this endpoint never needs."""
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        request = httpx.Request("POST", self._url, headers=self._headers, content=content, extensions=self._extensions)
        response = await self._transport.handle_async_request(request)
        try:
            return await _read_capped(response, request, self._max_body)
        finally:
            await response.aclose()


async def _read_capped(response: httpx.Response, request: httpx.Request, limit: int) -> httpx.Response:
    """Read the body of ``response``, at most ``limit`` bytes (decoded): any transport, any proxy."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        check_size(size, limit)
        chunks.append(chunk)
    # the body is decoded: headers about its encoding or length no longer apply
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _SIZE_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=request)


def _masked(response: httpx.Response, secrets: Secrets) -> httpx.Response:
    """Return ``response`` with every configured secret in its body masked, before any part of it is read or cut
    (a server that echoes the request headers must not put the key into answers, errors or the cache)."""
    if not secrets:
        return response
    text = response.content.decode("utf-8", errors="replace")
    masked = secrets.mask(text)
    if masked is text:
        return response
    # the body is decoded already: headers about its encoding or length no longer apply
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=masked.encode())


def _joined_stream(response: httpx.Response) -> httpx.Response:
    """Return a streamed answer (``data: {chunk}`` events) as the completion it adds up to: the text of its deltas,
    the last finish reason, and the usage a chunk reports, else one completion token per chunk with text (what
    llama.cpp sends)."""
    texts: list[str] = []
    finish, usage = None, None
    for line in response.content.decode("utf-8", errors="replace").splitlines():
        data = line[5:].strip() if line.startswith("data:") else ""
        if not data or data == "[DONE]":
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            return response  # not a stream after all; read as a plain answer
        choice = (chunk.get("choices") or [{}])[0] if isinstance(chunk, dict) else {}
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
            texts.append(delta["content"])
        finish = choice.get("finish_reason") or finish if isinstance(choice, dict) else finish
        usage = chunk.get("usage") or usage if isinstance(chunk, dict) else usage
    if not texts and finish is None:
        return response
    usage = usage or {"prompt_tokens": 0, "completion_tokens": len(texts)}
    message = {"role": "assistant", "content": "".join(texts)}
    completion = {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _SIZE_HEADERS]
    return httpx.Response(response.status_code, headers=headers, json=completion, request=response.request)


def _rejected_optional_field(body: dict[str, Any], status: int, message: str) -> str | None:
    """Return the optional field a 400/422 answer names as the problem, if the body holds it."""
    if status not in (400, 422):
        return None
    return next((name for name, words in _OPTIONAL_FIELDS.items() if name in body and words.search(message)), None)


def default_transport(
    base_url: str, max_connections: int, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
) -> httpx.AsyncBaseTransport:
    """Return the lean keep-alive transport, or httpx's own (with the proxy) when the environment sets a
    proxy for ``base_url``; the client caps the body of either at ``max_response_bytes``."""
    proxy = _environment_proxy(httpx.URL(base_url))
    if proxy is None:
        return KeepAliveTransport(max_connections=max_connections, max_response_bytes=max_response_bytes)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    try:
        return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits)
    except ImportError as err:  # a socks5:// proxy without the socksio package
        raise EndpointConfigError(
            f"the proxy the environment sets for {base_url} ({httpx.URL(proxy).scheme}://, from HTTP(S)_PROXY or "
            f"ALL_PROXY) cannot be used: {err}. Install httpx[socks], or exclude the host with NO_PROXY."
        ) from err


@dataclass(frozen=True, slots=True)
class _Reply:
    """What one HTTP attempt brought back: the answer, or an error kind and whether another attempt may help."""

    text: str | None = None
    finish_reason: str | None = None
    usage: tuple[int, int] = (0, 0)
    error_kind: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    unreachable: bool = False  # the server was not reached (connection refused or timed out, unknown host)

    @classmethod
    def failed(cls, kind: str, message: str, *, retryable: bool, retry_after: float | None = None) -> _Reply:
        return cls(error_kind=kind, error=message, retryable=retryable, retry_after=retry_after)

    def result(self, latency_s: float, attempts: int) -> ChatResult:
        return ChatResult(
            text=self.text,
            finish_reason=self.finish_reason,
            prompt_tokens=self.usage[0],
            completion_tokens=self.usage[1],
            latency_s=latency_s,
            attempts=attempts,
            error_kind=self.error_kind,
            error=self.error,
        )


@dataclass(eq=False, slots=True)
class _Ticket:
    """One request as the breaker sees it: its model (for a probe) and the success count at its first attempt."""

    model: str
    since: int | None = None


def estimate_tokens(request: ChatRequest) -> int:
    """Return a budget estimate for a request: about 4 characters a token in, plus max_tokens out."""
    return sum(estimate_token_parts(request))


def estimate_token_parts(request: ChatRequest) -> tuple[int, int]:
    """Return the estimate of a request's (prompt, completion) tokens: about 4 characters a token, and its
    max_tokens (256 without one)."""
    chars = sum(len(m.get("content") or "") for m in request.messages)
    out = request.params.get("max_tokens") or request.params.get("max_completion_tokens") or 256
    return chars // 4, int(out)


def _environment_proxy(url: httpx.URL) -> str | None:
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass_environment(url.host):
        return None
    return proxy


def _headers(api_key: str | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json"), ("Accept", "application/json"), ("User-Agent", USER_AGENT)]
    key = (api_key or "").strip()  # a key read from a file or secret often ends in a newline
    return [*headers, ("Authorization", f"Bearer {key}")] if key else headers


def _rate_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


def _cacheable(result: ChatResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }


def _parse_completion(response: httpx.Response) -> _Reply:
    """Read a 200 answer: its text, or why there is none, with the finish reason, usage and rate headers."""
    headers = _rate_headers(response)
    try:
        # Invalid UTF-8 (a character cut at max_tokens) is replaced, not a reason to retry the call.
        body = encodable_values(json.loads(response.content.decode("utf-8", errors="replace")))
    except ValueError as err:
        problem = f"completion is not JSON ({err}): {response.text[:200]!r}"
        return _Reply(error_kind=BAD_RESPONSE, error=problem, retryable=True, status=200, headers=headers)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return _error_body_reply(body, response, headers)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    usage = _usage(body.get("usage"))
    text = _content_text(message.get("content"))
    if text is not None:
        return _Reply(text=text, finish_reason=finish, usage=usage, status=200, headers=headers)
    if message.get("refusal"):
        problem = f"the model refused: {str(message['refusal'])[:300]}"
    else:
        problem = "completion has no text content" + (f" (finish_reason {finish})" if finish else "")
        if message.get("reasoning_content") or message.get("reasoning"):
            problem += "; the answer held only reasoning"
    return _Reply(
        finish_reason=finish, usage=usage, error_kind=BAD_RESPONSE, error=problem, status=200, headers=headers
    )


def _error_body_reply(body: Any, response: httpx.Response, headers: dict[str, str]) -> _Reply:
    """Some servers answer 200 with an error body (``{"error": ...}``, vLLM's ``{"object": "error", "code": 404}``);
    a code that says the request itself is wrong (4xx other than 408/409/429) is not retried."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(body, dict) and body.get("object") == "error":
        error = body
    if not error:
        problem = f"completion has no choices: {response.text[:200]!r}"
        return _Reply(error_kind=BAD_RESPONSE, error=problem, retryable=True, status=200, headers=headers)
    code = error.get("code") if isinstance(error, dict) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    retryable = code is None or not 400 <= code < 500 or RetryPolicy().should_retry(code)
    problem = f"server error{f' {code}' if code else ''}: {_error_text(error)}"
    return _Reply(error_kind=BAD_RESPONSE, error=problem, retryable=retryable, status=200, headers=headers)


def _content_text(content: object) -> str | None:
    """Return message content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, str | dict)]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None
    return None


def _usage(usage: object) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return (0, 0)
    return (_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: object) -> int:
    try:
        number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else 0.0
    except ValueError:
        return 0
    return int(number) if math.isfinite(number) and number > 0 else 0


def _error_message(response: httpx.Response) -> str:
    text = encodable(response.content.decode("utf-8", errors="replace"))
    try:
        body = encodable_values(json.loads(text))
    except ValueError:
        return text[:300] or _no_message(response)
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return _error_text(body[key])
    return text[:300]


def _no_message(response: httpx.Response) -> str:
    location = response.headers.get("location")
    return f"(no message; redirected to {location})" if location else "(no message)"


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            if error.get(key):
                return str(error[key])[:300]
    return (error if isinstance(error, str) else json.dumps(error, ensure_ascii=False, default=str))[:300]
