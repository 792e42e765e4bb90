"""Generation step: one call per (ok prompt, generator); one row per call result, failures included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pref_assets.core import status
from pref_assets.core.calls import Call
from pref_assets.core.conversation import prompt_messages

EMPTY_ANSWER = "empty_answer"


class Generator(Protocol):
    """What the step needs to know of a generator model."""

    name: str
    endpoint: str
    model: str
    params: Mapping[str, Any]


class Result(Protocol):
    """What the step reads from a call result."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    error_kind: str | None
    error: str | None
    cached: bool


def plan_generations(prompts: Sequence[dict[str, Any]], generators: Sequence[Generator]) -> list[tuple[str, str, Call]]:
    """Return (prompt_id, generator name, call) for every ok prompt and generator."""
    return [
        (
            p["prompt_id"],
            g.name,
            Call(
                g.endpoint,
                g.model,
                tuple(prompt_messages(p["instruction"], p.get("system_prompt"), p.get("messages"))),
                tuple(g.params.items()),
            ),
        )
        for p in prompts
        if p["status"] == status.OK
        for g in generators
    ]


def generation_row(prompt_id: str, model: str, result: Result) -> dict[str, Any]:
    """Return the stored row of one generation call; an empty or failed answer is a failed row."""
    row = {
        "prompt_id": prompt_id,
        "model": model,
        "generation": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s,
        "attempts": result.attempts,
        "cached": result.cached,
        "truncated": result.finish_reason == "length",
    }
    if result.error_kind is not None:
        return row | status.failure(status.STAGE_GENERATIONS, f"{result.error_kind}: {result.error}")
    if not (result.text or "").strip():
        return row | status.failure(status.STAGE_GENERATIONS, EMPTY_ANSWER)
    return row | status.ok()


def upstream_failure_row(prompt: Mapping[str, Any]) -> dict[str, Any]:
    """Return the generations row that carries a prompt which failed before this stage."""
    return {
        "prompt_id": prompt["prompt_id"],
        "model": None,
        "generation": None,
        "finish_reason": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_s": 0.0,
        "attempts": 0,
        "cached": False,
        "truncated": False,
        **{k: prompt[k] for k in ("status", "failed_stage", "reason")},
    }
