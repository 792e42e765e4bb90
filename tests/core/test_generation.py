from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pref_assets.core.generation import Planned, generation_row, plan_generations, upstream_failure_row
from pref_assets.core.principles import BUILT_IN
from pref_assets.core.rows import PromptRow


@dataclass(frozen=True)
class _Generator:
    name: str
    endpoint: str = "e"
    model: str = "m"
    params: dict = field(default_factory=dict)
    num_generations: int = 1
    system_prompt: str | None = None


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
    assert [(x.prompt.row_id, x.model, x.candidate) for x in plan] == [("batch-00000#4", m, 0) for m in "ab"]
    call = plan[0].call
    assert call.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"})
    assert call.params == (("temperature", 0.5),)
    assert plan[0].principle is None


def test_several_candidates_are_separate_calls_with_seeds_of_their_own() -> None:
    plan = plan_generations([PROMPT], [_Generator("a", params={"seed": 7, "temperature": 1.0}, num_generations=3)])
    assert [x.candidate for x in plan] == [0, 1, 2]
    seeds = [dict(x.call.params)["seed"] for x in plan]
    assert seeds[0] == 7 and len(set(seeds)) == 3, "candidate 0 is sent as configured, the others reseeded"
    assert all(dict(x.call.params)["temperature"] == 1.0 for x in plan)
    assert len({repr(x.call) for x in plan}) == 3, "each candidate is its own request (its own cache entry)"
    again = plan_generations([PROMPT], [_Generator("a", params={"seed": 7, "temperature": 1.0}, num_generations=3)])
    assert [x.call for x in again] == [x.call for x in plan], "a rerun sends the same requests"
    unseeded = plan_generations([PROMPT], [_Generator("a", num_generations=2)])
    assert "seed" not in dict(unseeded[0].call.params) and "seed" in dict(unseeded[1].call.params)


def test_principles_are_drawn_per_prompt_generator_and_candidate_and_sent_as_system_prompt() -> None:
    texts = {"honesty": BUILT_IN["honesty"], "helpfulness": BUILT_IN["helpfulness"]}
    prompts = [PromptRow(row_id=f"b#{i}", prompt_id=f"id{i}", instruction=f"Q{i}?") for i in range(40)]
    gen = _Generator("a", system_prompt="You are terse.", num_generations=2)
    plan = plan_generations(prompts, [gen], texts)
    assert {x.principle for x in plan} == set(texts), "both principles are drawn"
    assert [x.principle for x in plan] == [x.principle for x in plan_generations(prompts, [gen], texts)]
    for x in plan:
        system = x.call.messages[0]
        assert system == {"role": "system", "content": f"You are terse.\n\n{texts[x.principle]}"}
        assert x.call.messages[1] == {"role": "user", "content": x.prompt.instruction}
    with_own = plan_generations([PROMPT], [gen], {"honesty": texts["honesty"]})[0].call.messages
    assert with_own[0]["content"] == f"You are terse.\n\n{texts['honesty']}\n\nBe brief.", "the prompt's own last"
    assert len(with_own) == 2


def test_a_generator_system_prompt_alone_goes_before_a_conversations_own_turns() -> None:
    chat = PromptRow(row_id="b#0", prompt_id="c", instruction="Hi", messages=[{"role": "user", "content": "Hi"}])
    [planned] = plan_generations([chat], [_Generator("a", system_prompt="Answer in French.")])
    system = {"role": "system", "content": "Answer in French."}
    assert planned.call.messages == (system, {"role": "user", "content": "Hi"})


def _planned(model: str = "a", candidate: int = 0, principle: str | None = None) -> Planned:
    [first] = plan_generations([PROMPT], [_Generator(model)])
    return Planned(PROMPT, model, candidate, principle, first.call)


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
    row = generation_row(_planned(), result)
    assert (row.row_id, row.prompt_id, row.model) == ("batch-00000#4", "p4", "a")
    assert (row.status, row.reason) == (status, reason)
    assert row.failed_stage == (None if status == "ok" else "generations_by_model")


def test_generation_row_marks_an_answer_cut_at_max_tokens() -> None:
    row = generation_row(_planned(), _Result(finish_reason="length"))
    assert row.truncated and (row.prompt_tokens, row.completion_tokens, row.latency_s) == (3, 5, 0.25)


def test_generation_row_names_its_candidate_and_principle() -> None:
    row = generation_row(_planned("a", 2, "honesty"), _Result())
    assert (row.candidate, row.candidate_id, row.principle) == (2, "batch-00000#4/a/2", "honesty")


def test_a_prompt_failed_upstream_is_carried_with_its_status() -> None:
    row = upstream_failure_row(FAILED)
    assert (row.row_id, row.model, row.generation) == ("batch-00000#5", None, None)
    assert (row.status, row.failed_stage, row.reason) == ("failed", "prompts", "x")
    assert (row.prompt_tokens, row.attempts, row.cached, row.truncated) == (0, 0, False, False)
