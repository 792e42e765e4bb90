"""Batch jobs as values: request lines, files split by a provider's limits, result lines read back by id.

A batch job sends many chat requests as one file and answers them hours later at a lower price. Each request line
carries the request-cache key of its call as ``custom_id``, so an answer that comes back enters the cache under the
key an online call would use: switching an endpoint between modes never pays twice.

``BatchShape`` is what one provider's form of the API looks like (request lines, result lines, statuses);
``OPENAI_SHAPE`` is OpenAI's, which other servers copy. No dagster, no httpx here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

CHAT_URL = "/v1/chat/completions"
# OpenAI's documented per-file limits.
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1024 * 1024
# A result line longer than this costs its request only (the provider's answer is capped like an online one).
MAX_RESULT_LINE_BYTES = 8 * 1024 * 1024
MAX_ERROR_CHARS = 500

OPEN_STATUSES = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
ENDED_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One request of a batch file: its cache key (the ``custom_id``) and the chat body."""

    key: str
    body: dict[str, Any]

    def encoded(self) -> bytes:
        """Return the JSONL line (with its newline) the provider reads."""
        line = {"custom_id": self.key, "method": "POST", "url": CHAT_URL, "body": self.body}
        return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True, slots=True)
class FileLimits:
    """How much one input file may hold."""

    max_requests: int = MAX_REQUESTS_PER_FILE
    max_bytes: int = MAX_BYTES_PER_FILE


@dataclass(frozen=True, slots=True)
class BatchFile:
    """The request lines of one input file, and the file's bytes."""

    lines: tuple[RequestLine, ...]
    content: bytes

    @property
    def keys(self) -> tuple[str, ...]:
        """Return the request keys the file holds, in order."""
        return tuple(line.key for line in self.lines)

    def job_key(self, endpoint: str) -> str:
        """Return the identity of this file's job on ``endpoint``: a hash of its request keys, so the same requests
        submitted twice are recognized as one job."""
        digest = hashlib.sha256(endpoint.encode() + b"\0" + "\n".join(sorted(self.keys)).encode())
        return digest.hexdigest()[:32]


class OversizedRequestError(ValueError):
    """One request line is larger than a whole file may be."""


def split_files(lines: Sequence[RequestLine], limits: FileLimits) -> list[BatchFile]:
    """Return ``lines`` cut into files within ``limits`` (requests and bytes per file), in order; a line larger
    than a whole file raises ``OversizedRequestError`` naming its key."""
    files: list[BatchFile] = []
    chunk: list[RequestLine] = []
    parts: list[bytes] = []
    size = 0
    for line in lines:
        encoded = line.encoded()
        if len(encoded) > limits.max_bytes:
            raise OversizedRequestError(f"request {line.key} is {len(encoded)} bytes, over {limits.max_bytes} a file")
        if chunk and (len(chunk) >= limits.max_requests or size + len(encoded) > limits.max_bytes):
            files.append(BatchFile(tuple(chunk), b"".join(parts)))
            chunk, parts, size = [], [], 0
        chunk.append(line)
        parts.append(encoded)
        size += len(encoded)
    if chunk:
        files.append(BatchFile(tuple(chunk), b"".join(parts)))
    return files


@dataclass(frozen=True, slots=True)
class LineResult:
    """What a result line says of one request: the completion body (status 200), or the provider's error."""

    key: str
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether the request was answered."""
        return self.body is not None


@dataclass(frozen=True, slots=True)
class ParsedResults:
    """The result lines of one file read back: by request key, and the lines that could not be read."""

    by_key: dict[str, LineResult] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()


def parse_result_lines(
    chunks: Iterable[bytes], known: frozenset[str], *, max_line_bytes: int = MAX_RESULT_LINE_BYTES
) -> ParsedResults:
    """Read output or error file lines (JSONL, any order) into results by ``custom_id``.

    Only keys in ``known`` are kept (a line naming another request is reported as unreadable); a line that is too
    long, not JSON or shaped otherwise costs only itself. A key seen twice keeps its first answer, or an answer over
    an earlier error.
    """
    by_key: dict[str, LineResult] = {}
    unreadable: list[str] = []
    for raw in iter_lines(chunks, max_line_bytes):
        if raw is None:
            unreadable.append(f"a line over {max_line_bytes} bytes")
            continue
        if not raw.strip():
            continue
        line = read_result_line(raw)
        if isinstance(line, str):
            unreadable.append(line)
        elif line.key not in known:
            unreadable.append(f"a line for an unknown custom_id {line.key[:80]!r}")
        elif line.key not in by_key or (line.ok and not by_key[line.key].ok):
            by_key[line.key] = line
    return ParsedResults(by_key, tuple(unreadable))


def iter_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[bytes | None]:
    """Yield the lines of a byte stream; a line longer than ``max_line_bytes`` is skipped and yields None."""
    pending = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if not skipping and len(pending) + end - start <= max_line_bytes:
                pending += chunk[start:end]
                yield bytes(pending)
            elif not skipping:
                yield None
            pending.clear()
            skipping = False
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > max_line_bytes:
                pending.clear()
                skipping = True
                yield None
    if pending and not skipping:
        yield bytes(pending)


def read_result_line(raw: bytes) -> LineResult | str:
    """Return one output/error line as a result, or why it cannot be read."""
    try:
        line = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as err:  # bounded in bytes already; too deep is not JSON we read
        return f"a line that is not JSON ({str(err)[:100]})"
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return "a line without a custom_id"
    key = line["custom_id"]
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    body = response.get("body")
    status = response.get("status_code")
    if line.get("error") or status != 200 or not isinstance(body, dict):
        return LineResult(key, error=line_error(line.get("error"), status, body))
    return LineResult(key, body=body)


def line_error(error: object, status: object, body: object) -> str:
    """Return the provider's error of one line, as text a row can carry."""
    if isinstance(error, dict):
        text = f"{error.get('code') or 'error'}: {error.get('message') or json.dumps(error)}"
    elif error:
        text = str(error)
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        text = f"HTTP {status}: {body['error'].get('message') or json.dumps(body['error'])}"
    else:
        text = f"HTTP {status}: {json.dumps(body)[:200] if body is not None else 'no body'}"
    return text[:MAX_ERROR_CHARS]


def is_open(status: str) -> bool:
    """Return whether a job in ``status`` may still change (its results are not final)."""
    return status not in ENDED_STATUSES


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A provider's view of one job: its status, result files, counts and timestamps."""

    provider_id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None
    ended_at: float | None = None

    @property
    def open(self) -> bool:
        """Return whether the job may still change."""
        return is_open(self.status)


class BatchShape(Protocol):
    """One provider's form of a batch API: how requests are written and how its job objects read."""

    name: str

    def request_line(self, line: RequestLine) -> bytes:
        """Return one request as a line of the input file."""
        ...

    def job_status(self, job: dict[str, Any]) -> JobStatus:
        """Return a job object of the provider as a ``JobStatus``."""
        ...


@dataclass(frozen=True, slots=True)
class OpenAIShape:
    """OpenAI's Batch API: JSONL input with ``custom_id``/``method``/``url``/``body``, a batch object per job."""

    name: str = "openai"

    def request_line(self, line: RequestLine) -> bytes:
        """Return one request as a line of the input file."""
        return line.encoded()

    def job_status(self, job: dict[str, Any]) -> JobStatus:
        """Return a batch object as a ``JobStatus`` (unknown fields ignored; wrong types read as absent)."""
        counts = job.get("request_counts") if isinstance(job.get("request_counts"), dict) else {}
        errors = job.get("errors") if isinstance(job.get("errors"), dict) else {}
        data = errors.get("data") if isinstance(errors.get("data"), list) else []
        messages = tuple(str(e.get("message", e))[:MAX_ERROR_CHARS] for e in data[:20] if isinstance(e, dict))
        metadata = job.get("metadata") if isinstance(job.get("metadata"), dict) else {}
        ended = [job.get(f"{s}_at") for s in ("completed", "failed", "expired", "cancelled")]
        return JobStatus(
            provider_id=str(job.get("id", "")),
            status=str(job.get("status", "unknown")),
            output_file_id=_text(job.get("output_file_id")),
            error_file_id=_text(job.get("error_file_id")),
            total=_int(counts.get("total")),
            completed=_int(counts.get("completed")),
            failed=_int(counts.get("failed")),
            errors=messages,
            metadata={str(k): str(v) for k, v in list(metadata.items())[:16]},
            created_at=_number(job.get("created_at")),
            ended_at=next((t for t in map(_number, ended) if t is not None), None),
        )


OPENAI_SHAPE = OpenAIShape()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
