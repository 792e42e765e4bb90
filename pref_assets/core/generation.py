"""Generation step: one call per (ok prompt, generator); one row per call result, failures included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pref_assets.core import status
from pref_assets.core.calls import Call
from pref_assets.core.conversation import prompt_messages
from pref_assets.core.rows import GenerationRow, PromptRow, StageRow

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


def plan_generations(
    prompts: Sequence[PromptRow], generators: Sequence[Generator]
) -> list[tuple[PromptRow, str, Call]]:
    """Return (prompt, generator name, call) for every ok prompt and generator, prompt by prompt."""
    return [(p, g.name, _call(p, g)) for p in prompts if p.ok for g in generators]


def generation_row(prompt: StageRow, model: str, result: Result) -> GenerationRow:
    """Return the stored row of one generation call for ``prompt``; an empty or failed answer is a failed row."""
    return GenerationRow(
        row_id=prompt.row_id,
        prompt_id=prompt.prompt_id,
        model=model,
        generation=result.text,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=result.latency_s,
        attempts=result.attempts,
        cached=result.cached,
        truncated=result.finish_reason == "length",
        **_status(result),
    )


def upstream_failure_row(prompt: StageRow) -> GenerationRow:
    """Return the generations row that carries a prompt which failed before this stage."""
    return GenerationRow(row_id=prompt.row_id, prompt_id=prompt.prompt_id, **prompt.carried())


def _call(prompt: PromptRow, generator: Generator) -> Call:
    messages = prompt_messages(prompt.instruction, prompt.system_prompt, prompt.messages)
    return Call(generator.endpoint, generator.model, tuple(messages), tuple(generator.params.items()))


def _status(result: Result) -> dict[str, str | None]:
    if result.error_kind is not None:
        return status.failure(status.STAGE_GENERATIONS, f"{result.error_kind}: {result.error}")
    if not (result.text or "").strip():
        return status.failure(status.STAGE_GENERATIONS, EMPTY_ANSWER)
    return status.ok()
