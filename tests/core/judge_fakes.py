"""A chat result as the judge code reads it, for tests that answer judge calls without a server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeResult:
    text: str | None
    finish_reason: str | None = "stop"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    latency_s: float = 0.1
    attempts: int = 1
    error_kind: str | None = None
    error: str | None = None
    cached: bool = False
