"""Generation step: one call per (ok prompt, generator, candidate); one row per call result, failures included.

A generator with ``num_generations: k`` answers each prompt k times, in k separate requests: candidate 0 is sent
as configured, candidate i > 0 with a seed of its own (derived from the configured seed and i), so each candidate
is its own request with its own request-cache entry. With principles, each candidate's system prompt is the
generator's ``system_prompt`` followed by a principle drawn for (prompt id, generator, candidate); a prompt's own
system prompt (or system turn) follows both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pref_assets.core import status
from pref_assets.core.calls import Call
from pref_assets.core.conversation import Message, prompt_messages
from pref_assets.core.ids import stable_hash
from pref_assets.core.principles import draw_principle, system_text
from pref_assets.core.rows import GenerationRow, PromptRow, StageRow

EMPTY_ANSWER = "empty_answer"


class Generator(Protocol):
    """What the step needs to know of a generator model."""

    name: str
    endpoint: str
    model: str
    params: Mapping[str, Any]
    num_generations: int
    system_prompt: str | None


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


@dataclass(frozen=True, slots=True)
class Planned:
    """One generation call to make: for which prompt, generator and candidate, under which principle."""

    prompt: PromptRow
    model: str
    candidate: int
    principle: str | None
    call: Call


def plan_generations(
    prompts: Sequence[PromptRow], generators: Sequence[Generator], principles: Mapping[str, str] | None = None
) -> list[Planned]:
    """Return the calls for every ok prompt, generator and candidate, prompt by prompt; ``principles`` maps each
    principle's name to its text (none: no principle)."""
    principles = principles or {}
    return [
        _planned(p, g, k, draw_principle(list(principles), p.prompt_id, g.name, k), principles)
        for p in prompts
        if p.ok
        for g in generators
        for k in range(g.num_generations)
    ]


def candidate_id(row_id: str | None, model: str, candidate: int) -> str:
    """Return the id of a generator's ``candidate``-th answer to the prompt of row ``row_id``."""
    return f"{row_id}/{model}/{candidate}"


def candidate_seed(seed: Any, candidate: int) -> int:
    """Return the seed of candidate ``candidate`` > 0 of a generator configured with ``seed`` (None: none)."""
    return int(stable_hash("candidate-seed", str(seed), str(candidate))[:8], 16) & 0x7FFFFFFF


def generation_row(planned: Planned, result: Result) -> GenerationRow:
    """Return the stored row of one planned generation call; an empty or failed answer is a failed row."""
    prompt = planned.prompt
    return GenerationRow(
        row_id=prompt.row_id,
        prompt_id=prompt.prompt_id,
        model=planned.model,
        candidate=planned.candidate,
        candidate_id=candidate_id(prompt.row_id, planned.model, planned.candidate),
        principle=planned.principle,
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


def _planned(
    prompt: PromptRow, generator: Generator, candidate: int, principle: str | None, texts: Mapping[str, str]
) -> Planned:
    messages = prompt_messages(prompt.instruction, prompt.system_prompt, prompt.messages)
    ours = system_text(generator.system_prompt, texts[principle] if principle else None)
    params = dict(generator.params)
    if candidate:
        params["seed"] = candidate_seed(params.get("seed"), candidate)
    call = Call(generator.endpoint, generator.model, tuple(_with_system(messages, ours)), tuple(params.items()))
    return Planned(prompt, generator.name, candidate, principle, call)


def _with_system(messages: list[Message], text: str | None) -> list[Message]:
    """Return ``messages`` with ``text`` first in the system turn (the prompt's own system turn after it)."""
    if not text:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": system_text(text, messages[0]["content"]) or ""}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _status(result: Result) -> dict[str, str | None]:
    if result.error_kind is not None:
        return status.failure(status.STAGE_GENERATIONS, f"{result.error_kind}: {result.error}")
    if not (result.text or "").strip():
        return status.failure(status.STAGE_GENERATIONS, EMPTY_ANSWER)
    return status.ok()
