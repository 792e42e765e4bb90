"""The fake server's Batch API, in OpenAI's documented shape: files, batches, results by ``custom_id``.

``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}`` and ``/v1/files/{id}/content``;
``POST /v1/batches``, ``GET /v1/batches`` (newest first, ``limit``/``after``), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. ``GET /_batches`` serves counters for tests.

A batch moves through ``validating``, ``in_progress`` and ``finalizing`` to ``completed`` as time passes (the
``*_s`` knobs); a file over the per-file limits, or with a bad line, fails validation. Knobs make some lines fail
the first time their body is sent (``error_fraction``), the first ``expire_first`` batches expire with only part
of their lines done, a cancelled batch keeps the lines done before the cancel, and ``create_reply_delay_s``
holds the answer to a create call after the batch exists (a client killed meanwhile never learns its id).
Answers are those the online route gives for the same body (deterministic), without its fault knobs; of the judge
requests, ``judge_truncated`` are answered cut off (``finish_reason: length``) and ``judge_malformed`` with
unreadable JSON, chosen by a hash of the body (a re-ask with another seed draws again).
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import itertools
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# The completion answering a body: plainly, or with a fault ("truncated" or "malformed").
Answer = Callable[[dict[str, Any], str | None], dict[str, Any]]
IsJudge = Callable[[dict[str, Any]], bool]
Authorized = Callable[[Scope], bool]
CHAT_URL = "/v1/chat/completions"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass(frozen=True)
class BatchKnobs:
    """How the fake Batch API behaves; ``BatchKnobs.from_json('{"in_progress_s": 2}')`` sets some."""

    validating_s: float = 0.2
    in_progress_s: float = 0.5
    finalizing_s: float = 0.2
    error_fraction: float = 0.0
    expire_first: int = 0
    expire_done_fraction: float = 0.5
    max_requests_per_file: int = 50_000
    max_bytes_per_file: int = 200 * 1024 * 1024
    create_reply_delay_s: float = 0.0
    judge_truncated: float = 0.0
    judge_malformed: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> BatchKnobs:
        """Return the knobs a JSON object sets (empty text: the defaults); unknown names are an error."""
        values = json.loads(text) if text.strip() else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown batch knobs {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class _File:
    id: str
    purpose: str
    filename: str
    content: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose}  # fmt: skip


@dataclass
class _Batch:
    id: str
    input_file_id: str
    window: str
    metadata: dict[str, str]
    created: float
    lines: list[dict[str, Any]]
    problems: list[str]
    expires: bool
    cancel_at: float | None = None
    status: str = "validating"
    ended_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})


class FakeBatches:
    """Serves the Batch API routes of the fake server."""

    def __init__(self, knobs: BatchKnobs, answer: Answer, authorized: Authorized, is_judge: IsJudge) -> None:
        self.knobs, self.answer, self.authorized, self.is_judge = knobs, answer, authorized, is_judge
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self.ids = itertools.count(1)
        self.errored: set[str] = set()
        self.answered: set[str] = set()
        self.lines_sent = 0
        self.repeated_after_success = 0

    def route(self, method: str, path: str) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        """Return the handler of a Batch API request, or None if the path is not one."""
        parts = path.strip("/").split("/")
        table: dict[tuple[str, ...], Callable[..., Awaitable[None]]] = {
            ("POST", "v1", "files"): self.upload,
            ("POST", "v1", "batches"): self.create,
            ("GET", "v1", "batches"): self.list,
            ("GET", "_batches"): self.counters,
        }
        if tuple([method, *parts]) in table:
            return table[tuple([method, *parts])]
        if method == "GET" and parts[:2] == ["v1", "files"] and (len(parts) == 3 or parts[3:] == ["content"]):
            return lambda s, r, send: self.file(s, send, parts[2], content=len(parts) == 4)
        if parts[:2] == ["v1", "batches"] and len(parts) == 3 and method == "GET":
            return lambda s, r, send: self.retrieve(s, send, parts[2])
        if parts[:2] == ["v1", "batches"] and len(parts) == 4 and parts[3] == "cancel" and method == "POST":
            return lambda s, r, send: self.cancel(s, send, parts[2])
        return None

    # ------------------------------------------------------------ routes

    async def upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read(receive, MAX_UPLOAD_BYTES)
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        if raw is None:
            return await _error(send, 413, f"the file is over {MAX_UPLOAD_BYTES} bytes")
        form = _multipart(_header(scope, b"content-type"), raw)
        if "file" not in form or form.get("purpose", (b"", ""))[0].decode() != "batch":
            return await _error(send, 400, "expected multipart fields 'file' and purpose=batch")
        content, filename = form["file"]
        made = _File(f"file-{next(self.ids)}", "batch", filename or "input.jsonl", content, int(time.time()))
        self.files[made.id] = made
        await _json(send, 200, made.object())

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read(receive, 1 << 20)
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        try:
            body = json.loads(raw or b"")
        except ValueError:
            return await _error(send, 400, "the body is not JSON")
        source = self.files.get(str(body.get("input_file_id")))
        if source is None:
            return await _error(send, 400, "input_file_id names no uploaded file")
        if body.get("endpoint") != CHAT_URL or body.get("completion_window") != "24h":
            return await _error(send, 400, "endpoint must be /v1/chat/completions and completion_window 24h")
        lines, problems = self._validate(source.content)
        batch = _Batch(
            id=f"batch_{next(self.ids)}",
            input_file_id=source.id,
            window=body["completion_window"],
            metadata={str(k): str(v) for k, v in (body.get("metadata") or {}).items()},
            created=time.time(),
            lines=lines,
            problems=problems,
            expires=len(self.batches) < self.knobs.expire_first,
        )
        batch.counts["total"] = len(lines)
        self.batches[batch.id] = batch
        self.lines_sent += len(lines)
        if self.knobs.create_reply_delay_s:  # the batch exists; the client has not heard so yet
            await asyncio.sleep(self.knobs.create_reply_delay_s)
        await _json(send, 200, self._object(batch))

    async def list(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
        limit = max(1, min(100, int(query.get("limit", ["20"])[0])))
        newest = list(reversed(self.batches.values()))
        after = query.get("after", [None])[0]
        if after in self.batches:
            newest = newest[[b.id for b in newest].index(after) + 1 :]
        page = newest[:limit]
        data = [self._object(b) for b in page]
        await _json(send, 200, {"object": "list", "data": data, "has_more": len(newest) > limit,
                                "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None})  # fmt: skip

    async def retrieve(self, scope: Scope, send: Send, batch_id: str) -> None:
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        batch = self.batches.get(batch_id)
        if batch is None:
            return await _error(send, 404, f"no batch {batch_id}")
        await _json(send, 200, self._object(batch))

    async def cancel(self, scope: Scope, send: Send, batch_id: str) -> None:
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        batch = self.batches.get(batch_id)
        if batch is None:
            return await _error(send, 404, f"no batch {batch_id}")
        self._advance(batch)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return await _error(send, 409, f"batch {batch_id} is {batch.status}; it cannot be cancelled")
        batch.cancel_at = batch.cancel_at or time.time()
        await _json(send, 200, self._object(batch))

    async def file(self, scope: Scope, send: Send, file_id: str, *, content: bool) -> None:
        if not self.authorized(scope):
            return await _error(send, 401, "invalid API key")
        found = self.files.get(file_id)
        if found is None:
            return await _error(send, 404, f"no file {file_id}")
        if not content:
            return await _json(send, 200, found.object())
        headers = [(b"content-type", b"application/jsonl"), (b"content-length", str(len(found.content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": found.content})

    async def counters(self, scope: Scope, receive: Receive, send: Send) -> None:
        for batch in self.batches.values():
            self._advance(batch)
        statuses = [b.status for b in self.batches.values()]
        await _json(send, 200, {"batches": len(self.batches), "lines": self.lines_sent,
                                "repeated_after_success": self.repeated_after_success,
                                "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}})  # fmt: skip

    # ------------------------------------------------------------ behaviour

    def _validate(self, content: bytes) -> tuple[list[dict[str, Any]], list[str]]:
        knobs = self.knobs
        if len(content) > knobs.max_bytes_per_file:
            return [], [f"the input file is {len(content)} bytes, over the limit of {knobs.max_bytes_per_file}"]
        lines, problems, seen = [], [], set()
        for number, raw in enumerate(content.splitlines(), 1):
            try:
                line = json.loads(raw)
            except ValueError:
                problems.append(f"line {number} is not JSON")
                continue
            ok = isinstance(line, dict) and line.get("method") == "POST" and line.get("url") == CHAT_URL
            if not ok or not isinstance(line.get("body"), dict) or line.get("custom_id") in seen:
                problems.append(f"line {number}: needs a unique custom_id, method POST, url {CHAT_URL} and a body")
                continue
            seen.add(line["custom_id"])
            lines.append(line)
        if len(lines) > knobs.max_requests_per_file:
            problems.append(f"{len(lines)} requests, over the limit of {knobs.max_requests_per_file} per file")
        return lines, problems

    def _advance(self, batch: _Batch) -> None:
        """Bring ``batch`` to the status its age gives it; write its result files when it ends."""
        if batch.ended_at is not None:
            return
        knobs, now = self.knobs, time.time()
        validated = batch.created + knobs.validating_s
        processed = validated + knobs.in_progress_s
        if batch.cancel_at is not None:
            if now < batch.cancel_at + knobs.finalizing_s:
                batch.status = "cancelling"
                return
            done = self._done_by(batch, batch.cancel_at, validated, processed)
            return self._end(batch, "cancelled", done, batch.cancel_at + knobs.finalizing_s)
        if now < validated:
            batch.status = "validating"
        elif batch.problems:
            self._end(batch, "failed", 0, validated)
        elif now < processed:
            batch.status = "in_progress"
            batch.counts["completed"] = self._done_by(batch, now, validated, processed)
        elif batch.expires:
            self._end(batch, "expired", int(len(batch.lines) * knobs.expire_done_fraction), processed)
        elif now < processed + knobs.finalizing_s:
            batch.status = "finalizing"
        else:
            self._end(batch, "completed", len(batch.lines), processed + knobs.finalizing_s)

    @staticmethod
    def _done_by(batch: _Batch, when: float, start: float, end: float) -> int:
        if when <= start:
            return 0
        return min(len(batch.lines), int(len(batch.lines) * (when - start) / max(end - start, 1e-9)))

    def _end(self, batch: _Batch, status: str, done: int, at: float) -> None:
        outputs, errors = [], []
        for number, line in enumerate(batch.lines):
            if number >= done:
                if status == "expired":
                    errors.append(_error_line(line, {"code": "batch_expired", "message": EXPIRED_MESSAGE}))
                continue
            digest = hashlib.sha256(json.dumps(line["body"], sort_keys=True).encode()).hexdigest()
            fails = int(digest[:8], 16) / 16**8 < self.knobs.error_fraction and digest not in self.errored
            if fails:
                self.errored.add(digest)
                body = {"error": {"message": "the fake server failed this line on purpose", "type": "server_error"}}
                errors.append(_result_line(line, 500, body))
                continue
            self.repeated_after_success += digest in self.answered
            self.answered.add(digest)
            outputs.append(_result_line(line, 200, self.answer(line["body"], self._fault(line["body"]))))
        batch.counts.update(completed=len(outputs), failed=len(errors))
        batch.output_file_id = self._store(outputs, "output") if outputs else None
        batch.error_file_id = self._store(errors, "errors") if errors else None
        batch.status, batch.ended_at = status, at

    def _fault(self, body: dict[str, Any]) -> str | None:
        """Return the fault a judge request's answer gets ("truncated", "malformed"), fixed by its body."""
        knobs = self.knobs
        if not (knobs.judge_truncated or knobs.judge_malformed) or not self.is_judge(body):
            return None
        digest = hashlib.sha256(b"judge_fault\0" + json.dumps(body, sort_keys=True).encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw < knobs.judge_truncated:
            return "truncated"
        return "malformed" if draw < knobs.judge_truncated + knobs.judge_malformed else None

    def _store(self, lines: list[dict[str, Any]], name: str) -> str:
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        made = _File(f"file-{next(self.ids)}", "batch_output", f"{name}.jsonl", content, int(time.time()))
        self.files[made.id] = made
        return made.id

    def _object(self, batch: _Batch) -> dict[str, Any]:
        self._advance(batch)
        ended = {f"{batch.status}_at": int(batch.ended_at)} if batch.ended_at is not None else {}
        errors = {"object": "list", "data": [{"code": "invalid_file", "message": p} for p in batch.problems[:20]]}
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": CHAT_URL,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created),
            "request_counts": dict(batch.counts),
            "metadata": batch.metadata,
            "errors": errors if batch.problems else None,
            **ended,
        }


def _result_line(line: dict[str, Any], status: int, body: dict[str, Any]) -> dict[str, Any]:
    request_id = hashlib.sha256(line["custom_id"].encode()).hexdigest()[:16]
    response = {"status_code": status, "request_id": request_id, "body": body}
    return {"id": f"batch_req_{request_id}", "custom_id": line["custom_id"], "response": response, "error": None}


def _error_line(line: dict[str, Any], error: dict[str, str]) -> dict[str, Any]:
    request_id = hashlib.sha256(line["custom_id"].encode()).hexdigest()[:16]
    return {"id": f"batch_req_{request_id}", "custom_id": line["custom_id"], "response": None, "error": error}


def _header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == name), "")


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[bytes, str]]:
    """Return the fields of a multipart/form-data body: name -> (bytes, filename)."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    out: dict[str, tuple[bytes, str]] = {}
    for part in message.get_payload() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        if name:
            out[str(name)] = (part.get_payload(decode=True) or b"", str(part.get_filename() or ""))
    return out


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    await _json(send, status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})
