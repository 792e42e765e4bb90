"""A client of OpenAI's Batch API shape on httpx: upload a request file, create, poll, cancel and list batches,
download result files.

Reads are retried like any request (408, 409, 429, >= 500, connection errors; ``Retry-After`` honoured up to
a cap). Creating a batch is retried only when nothing can have been created (a refused connection, a 429), never
after a request that may have reached the server (no answer, a 5xx): the caller finds such a batch by its
metadata instead. Every response body is bounded; a result file is streamed line by line, never held whole. The
key is masked in every message that leaves the client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from pref_assets.clients.retry import RetryPolicy, retry_after_seconds
from pref_assets.core.batch_jobs import CHAT_URL
from pref_assets.core.secrets import Secrets

MAX_OBJECT_BYTES = 4 * 1024 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024
MAX_LIST_PAGES = 50
Sleep = Callable[[float], None]


class BatchAPIError(RuntimeError):
    """The provider refused a request or answered something unreadable; ``status`` is the HTTP status (0: none)."""

    def __init__(
        self,
        message: str,
        status: int = 0,
        *,
        sent: bool = False,
        final: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.sent = sent  # the request may have reached the server (no answer read)
        self.final = final  # another attempt would get the same answer
        self.retry_after = retry_after


class BatchAPIClient:
    """Talks to one endpoint's ``/files`` and ``/batches`` (``base_url`` ends in ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        max_object_bytes: int = MAX_OBJECT_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
        sleep: Sleep = time.sleep,
    ) -> None:
        key = (api_key or "").strip()
        headers = {"User-Agent": "pref-assets", **({"Authorization": f"Bearer {key}"} if key else {})}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            transport=transport,
        )
        self._secrets = Secrets.of(api_key)
        self._retry = retry or RetryPolicy()
        self._max_object, self._max_file = max_object_bytes, max_file_bytes
        self._sleep = sleep

    def __enter__(self) -> BatchAPIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def upload(self, content: bytes, filename: str) -> str:
        """Upload a request file (``purpose=batch``) and return its file id."""
        files = {"file": (filename, content, "application/jsonl")}
        answer = self._request("POST", "files", files=files, data={"purpose": "batch"})
        return _field(answer, "id")

    def create(self, input_file_id: str, *, window: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Create a batch of the chat-completions requests in ``input_file_id``; return the batch object."""
        body = {"input_file_id": input_file_id, "endpoint": CHAT_URL, "completion_window": window,
                "metadata": metadata}  # fmt: skip
        return self._request("POST", "batches", json=body, once_sent=True)

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """Return the batch object of ``batch_id``."""
        return self._request("GET", f"batches/{_segment(batch_id)}")

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask the provider to cancel ``batch_id``; return the batch object."""
        return self._request("POST", f"batches/{_segment(batch_id)}/cancel")

    def iter_batches(self, *, page_size: int = 100, max_pages: int = MAX_LIST_PAGES) -> Iterator[dict[str, Any]]:
        """Yield batch objects, newest first, at most ``max_pages`` pages."""
        after: str | None = None
        for _ in range(max_pages):
            params = {"limit": page_size, **({"after": after} if after else {})}
            page = self._request("GET", "batches", params=params)
            data = page.get("data") if isinstance(page.get("data"), list) else []
            yield from (job for job in data if isinstance(job, dict))
            after = page.get("last_id") if isinstance(page.get("last_id"), str) else None
            if not page.get("has_more") or not after:
                return

    def find(self, metadata_key: str, value: str, *, max_pages: int = MAX_LIST_PAGES) -> dict[str, Any] | None:
        """Return the newest batch whose metadata holds ``metadata_key: value``, or None."""
        for job in self.iter_batches(max_pages=max_pages):
            metadata = job.get("metadata")
            if isinstance(metadata, dict) and metadata.get(metadata_key) == value:
                return job
        return None

    @contextmanager
    def download(self, file_id: str) -> Iterator[Iterator[bytes]]:
        """Stream the content of a result file; the stream stops with ``BatchAPIError`` past ``max_file_bytes``."""
        path = f"files/{_segment(file_id)}/content"
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                with self._http.stream("GET", path) as response:
                    if response.status_code == 200:
                        yield self._capped(response.iter_bytes())
                        return
                    response.read()
                    failure = self._failure(response)
            except httpx.TransportError as err:
                failure = BatchAPIError(self._secrets.mask(f"{type(err).__name__}: {err}"), sent=True)
            if not self._retryable(failure) or attempt == self._retry.max_attempts:
                raise failure
            self._sleep(self._retry.delay(attempt))

    def _capped(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self._max_file:
                raise BatchAPIError(f"a result file is larger than {self._max_file} bytes; reading stopped", final=True)
            yield chunk

    def _request(self, method: str, path: str, *, once_sent: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Send one request, retrying per the policy; ``once_sent``: never retry after it may have been received."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._exchange(method, path, **kwargs)
            except BatchAPIError as failure:
                retry = self._retryable(failure) and not (once_sent and (failure.sent or failure.status >= 500))
                if not retry or attempt >= self._retry.max_attempts:
                    raise
                self._sleep(self._retry.delay(attempt, failure.retry_after))

    def _exchange(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                content = self._read(response)
        except httpx.TimeoutException as err:
            connect = isinstance(err, httpx.ConnectTimeout)
            raise BatchAPIError(f"{type(err).__name__}: no answer in time", sent=not connect) from err
        except httpx.TransportError as err:
            sent = not isinstance(err, httpx.ConnectError)
            raise BatchAPIError(self._secrets.mask(f"{type(err).__name__}: {err}"), sent=sent) from err
        if response.status_code != 200:
            raise self._failure(response, content)
        try:
            body = json.loads(content)
        except (ValueError, RecursionError) as err:
            raise BatchAPIError(f"{method} {path}: the answer is not JSON", 200, final=True) from err
        if not isinstance(body, dict):
            raise BatchAPIError(f"{method} {path}: the answer is not a JSON object", 200, final=True)
        return body

    def _read(self, response: httpx.Response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_object:
                raise BatchAPIError(f"an answer is larger than {self._max_object} bytes; reading stopped", final=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _failure(self, response: httpx.Response, content: bytes | None = None) -> BatchAPIError:
        text = (content if content is not None else response.content)[:2000].decode("utf-8", errors="replace")
        try:
            error = json.loads(text).get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError, RecursionError):
            message = text
        text = self._secrets.mask(f"HTTP {response.status_code}: {str(message)[:300]}")
        return BatchAPIError(text, response.status_code, retry_after=retry_after_seconds(response.headers))

    def _retryable(self, failure: BatchAPIError) -> bool:
        return not failure.final and (failure.status == 0 or self._retry.should_retry(failure.status))


def _field(answer: dict[str, Any], name: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise BatchAPIError(f"the answer has no {name}", 200, final=True)
    return value


def _segment(identifier: str) -> str:
    """Return an id the provider gave as one safe URL path segment."""
    if not identifier or len(identifier) > 200 or not all(c.isalnum() or c in "-_." for c in identifier):
        raise BatchAPIError(f"not a valid id: {identifier[:40]!r}", final=True)
    return identifier
