from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pref_assets.core.generation import generation_row, plan_generations, upstream_failure_row
from pref_assets.core.rows import PromptRow


@dataclass(frozen=True)
class _Generator:
    name: str
    endpoint: str = "e"
    model: str = "m"
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Result:
    text: str | None = "answer"
    finish_reason: str | None = "stop"
    prompt_tokens: int = 3
    completion_tokens: int = 5
    latency_s: float = 0.25
    attempts: int = 1
    error_kind: str | None = None
    error: str | None = None
    cached: bool = False


PROMPT = PromptRow(row_id="batch-00000#4", prompt_id="p4", instruction="Why?", system_prompt="Be brief.")
FAILED = PromptRow(row_id="batch-00000#5", prompt_id=None, status="failed", failed_stage="prompts", reason="x")


def test_plan_has_one_call_per_ok_prompt_and_generator_with_its_conversation() -> None:
    gens = [_Generator("a", params={"temperature": 0.5}), _Generator("b", params={})]
    plan = plan_generations([PROMPT, FAILED], gens)
    assert [(p.row_id, name) for p, name, _ in plan] == [("batch-00000#4", "a"), ("batch-00000#4", "b")]
    call = plan[0][2]
    assert call.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"})
    assert call.params == (("temperature", 0.5),)


@pytest.mark.parametrize(
    ("result", "status", "reason"),
    [
        (_Result(), "ok", None),
        (_Result(text=" \n"), "failed", "empty_answer"),
        (_Result(text=None, error_kind="http_error", error="HTTP 500"), "failed", "http_error: HTTP 500"),
    ],
)
def test_generation_row_keeps_the_prompts_keys_and_fails_empty_or_failed_answers(
    result: _Result, status: str, reason: str | None
) -> None:
    row = generation_row(PROMPT, "a", result)
    assert (row.row_id, row.prompt_id, row.model) == ("batch-00000#4", "p4", "a")
    assert (row.status, row.reason) == (status, reason)
    assert row.failed_stage == (None if status == "ok" else "generations_by_model")


def test_generation_row_marks_an_answer_cut_at_max_tokens() -> None:
    row = generation_row(PROMPT, "a", _Result(finish_reason="length"))
    assert row.truncated and (row.prompt_tokens, row.completion_tokens, row.latency_s) == (3, 5, 0.25)


def test_a_prompt_failed_upstream_is_carried_with_its_status() -> None:
    row = upstream_failure_row(FAILED)
    assert (row.row_id, row.model, row.generation) == ("batch-00000#5", None, None)
    assert (row.status, row.failed_stage, row.reason) == ("failed", "prompts", "x")
    assert (row.prompt_tokens, row.attempts, row.cached, row.truncated) == (0, 0, False, False)
