from __future__ import annotations

import pytest

from pref_assets.core.grouping import group_generations
from pref_assets.core.rows import GenerationRow, PromptRow

MODELS = ["a", "b", "c"]


def _prompt(pid: str, status: str = "ok", reason: str | None = None, row_id: str | None = None) -> PromptRow:
    failed_stage = None if status == "ok" else "prompts"
    return PromptRow(
        row_id=row_id, prompt_id=pid, instruction=f"q{pid}", status=status, failed_stage=failed_stage, reason=reason
    )


def _gen(
    pid: str,
    model: str | None,
    text: str | None = "ans",
    status: str = "ok",
    reason: str | None = None,
    row_id: str | None = None,
) -> GenerationRow:
    return GenerationRow(row_id=row_id, prompt_id=pid, model=model, generation=text, status=status, reason=reason)


def test_lists_follow_model_order_not_arrival_order() -> None:
    gens = [_gen("1", "c", "C"), _gen("1", "a", "A"), _gen("1", "b", "B")]
    [row] = group_generations([_prompt("1")], gens, MODELS)
    assert row.generation_models == MODELS
    assert row.generations == ["A", "B", "C"]
    assert row.status == "ok"


def test_failed_and_missing_answers_keep_their_slot() -> None:
    gens = [_gen("1", "a", "A"), _gen("1", "c", None, "failed", "http_error: HTTP 500")]
    [row] = group_generations([_prompt("1")], gens, MODELS)
    assert row.generations == ["A", None, None]
    assert row.generation_status == ["ok", "missing", "failed"]
    assert row.generation_reasons == [None, "no generation row", "http_error: HTTP 500"]
    assert row.status == "ok"


def test_prompt_with_no_answer_fails_with_each_models_reason() -> None:
    gens = [_gen("1", m, None, "failed", "timeout: slow") for m in MODELS]
    [row] = group_generations([_prompt("1")], gens, MODELS)
    assert row.status == "failed"
    assert row.failed_stage == "generations_by_model"
    assert row.reason.startswith("no_answer: a: timeout: slow; b: timeout")


def test_upstream_failures_pass_through_in_order() -> None:
    prompts = [_prompt("1"), _prompt("2", "failed", "empty_instruction"), _prompt("3")]
    gens = [_gen(p, m) for p in ("1", "3") for m in MODELS] + [_gen("2", None, None, "failed", "empty_instruction")]
    rows = group_generations(prompts, gens, MODELS)
    assert [r.prompt_id for r in rows] == ["1", "2", "3"]
    assert rows[1].status == "failed" and rows[1].reason == "empty_instruction"
    assert rows[1].generations == [None, None, None]


@pytest.mark.parametrize(
    ("gens", "message"),
    [
        ([_gen("9", "a")], "unknown prompt"),
        ([_gen("1", "z")], "unknown prompt, model or candidate"),
        ([GenerationRow(prompt_id="1", model="a", candidate=1, generation="x")], "unknown prompt, model or candidate"),
        ([_gen("1", "a"), _gen("1", "a")], "two generations"),
    ],
)
def test_misaligned_input_is_an_error_not_a_shift(gens: list[GenerationRow], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_generations([_prompt("1")], gens, MODELS)


def test_generations_join_prompts_by_row_id_when_prompt_ids_repeat() -> None:
    prompts = [_prompt("1", row_id="b#0"), _prompt("1", row_id="b#1")]
    gens = [_gen("1", m, f"{m}{i}", row_id=f"b#{i}") for i in (1, 0) for m in MODELS]
    rows = group_generations(prompts, gens, MODELS)
    assert [(r.row_id, r.generations) for r in rows] == [("b#0", ["a0", "b0", "c0"]), ("b#1", ["a1", "b1", "c1"])]


def test_candidates_of_a_generator_sit_side_by_side_with_their_ids_and_principles() -> None:
    def cand(model: str, k: int, text: str | None, status: str = "ok") -> GenerationRow:
        return GenerationRow(row_id="b#0", prompt_id="1", model=model, candidate=k, candidate_id=f"b#0/{model}/{k}",
                             principle=f"p{k}", generation=text, status=status, reason=None if text else "timeout")
    gens = [cand("b", 0, "B0"), cand("a", 1, "A1"), cand("a", 0, None, "failed"), cand("a", 2, "A2")]
    [row] = group_generations([_prompt("1", row_id="b#0")], gens, ["a", "b"], {"a": 3, "b": 1})
    assert row.generation_models == ["a", "a", "a", "b"]
    assert row.candidate_ids == ["b#0/a/0", "b#0/a/1", "b#0/a/2", "b#0/b/0"]
    assert row.generations == [None, "A1", "A2", "B0"]
    assert row.generation_principles == ["p0", "p1", "p2", "p0"]
    assert row.generation_status == ["failed", "ok", "ok", "ok"]


def test_a_prompt_without_any_candidate_names_each_slot() -> None:
    gens = [GenerationRow(row_id="b#0", prompt_id="1", model="a", candidate=k, status="failed", reason="timeout: t")
            for k in range(2)]  # fmt: skip
    [row] = group_generations([_prompt("1", row_id="b#0")], gens, ["a", "b"], {"a": 2})
    assert row.status == "failed"
    assert row.reason == "no_answer: a#0: timeout: t; a#1: timeout: t; b: no generation row"
