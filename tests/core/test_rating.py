from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pref_assets.core.calls import Call
from pref_assets.core.rating import JudgeSpec, judge_all, plan_tasks, rating_rows


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


def _judge(**extra: Any) -> JudgeSpec:
    base = dict(
        name="judge",
        endpoint="e",
        model="m",
        params=(("seed", 1),),
        aspects=("overall-rating",),
        flavour="json_object_schema",
        shuffle=True,
        max_reasks=1,
    )
    return JudgeSpec(**(base | extra))


def _row(pid: str, answers: list[str | None], status: str = "ok") -> dict[str, Any]:
    return {
        "prompt_id": pid,
        "instruction": "Q",
        "topic": None,
        "system_prompt": None,
        "messages": None,
        "generation_models": [f"m{i}" for i in range(len(answers))],
        "generations": answers,
        "generation_status": ["ok" if a else "failed" for a in answers],
        "generation_reasons": [None] * len(answers),
        "status": status,
        "failed_stage": None if status == "ok" else "generations_by_model",
        "reason": None if status == "ok" else "no_answer: x",
    }


def _verdict_json(ratings: Sequence[int]) -> str:
    return json.dumps({f"answer_{i + 1}": {"rationale": "r", "rating": r} for i, r in enumerate(ratings)})


def _answer_by_content(calls: Sequence[Call]) -> list[FakeResult]:
    """Rate each shown answer by its text: 'good' 5, 'bad' 1, anything else 3."""
    out = []
    for call in calls:
        user = call.messages[-1]["content"]
        shown = [block.split("\n", 1)[1].split("\n\n")[0] for block in user.split("## Answer ")[1:]]
        out.append(FakeResult(_verdict_json([{"good": 5, "bad": 1}.get(s, 3) for s in shown])))
    return out


def test_shuffled_verdicts_map_back_to_the_right_model() -> None:
    rows = [_row(f"p{i}", ["bad", "good", "meh"]) for i in range(20)]
    judge = _judge()
    tasks = plan_tasks(rows, judge)
    assert len({t.shown for t in tasks}) > 1, "order should vary across prompts"
    out = rating_rows(rows, judge_all(tasks, _answer_by_content, judge.max_reasks), judge)
    assert all(r["scores"] == [1.0, 5.0, 3.0] for r in out)
    assert all(r["status"] == "ok" for r in out)


def test_failed_answers_are_not_shown_and_get_no_score() -> None:
    rows = [_row("p", ["good", None, "bad"])]
    judge = _judge()
    tasks = plan_tasks(rows, judge)
    assert sorted(tasks[0].shown) == [0, 2]
    [out] = rating_rows(rows, judge_all(tasks, _answer_by_content, 0), judge)
    assert out["scores"] == [5.0, None, 1.0]


def test_unparseable_answer_is_reasked_with_a_new_seed_then_fails_with_raw_text() -> None:
    seen: list[int] = []

    def garbage(calls: Sequence[Call]) -> list[FakeResult]:
        seen.extend(dict(c.params)["seed"] for c in calls)
        return [FakeResult("I refuse to answer in JSON.") for _ in calls]

    rows = [_row("p", ["a", "b"])]
    judge = _judge(max_reasks=2)
    [out] = rating_rows(rows, judge_all(plan_tasks(rows, judge), garbage, judge.max_reasks), judge)
    assert seen == [1, 2001, 3001]
    assert out["status"] == "failed" and out["failed_stage"] == "ratings"
    assert out["reason"].startswith("judge_unparseable")
    assert out["scores"] == [None, None]
    [judgement] = out["judgements"]
    assert judgement["raw_text"] == "I refuse to answer in JSON." and judgement["attempts"] == 3


def test_reask_that_succeeds_gives_an_ok_row() -> None:
    answers = iter([[FakeResult("nonsense")], [FakeResult(_verdict_json([4, 2]))]])
    rows = [_row("p", ["a", "b"])]
    judge = _judge(shuffle=False)
    [out] = rating_rows(rows, judge_all(plan_tasks(rows, judge), lambda calls: next(answers), 1), judge)
    assert out["status"] == "ok" and out["scores"] == [4.0, 2.0]
    assert out["judgements"][0]["attempts"] == 2


def test_truncated_and_failed_requests_have_their_own_reasons() -> None:
    rows = [_row("p1", ["a", "b"]), _row("p2", ["a", "b"]), _row("p3", ["a", "b"])]
    results = [
        FakeResult('{"answer_1": {"rat', finish_reason="length"),
        FakeResult(None, error_kind="http_error", error="HTTP 400: context too long"),
        # a reasoning judge that spent max_tokens thinking: no text at all
        FakeResult(None, finish_reason="length", error_kind="bad_response", error="completion has no text content"),
    ]
    judge = _judge()
    out = rating_rows(rows, judge_all(plan_tasks(rows, judge), lambda calls: results, 3), judge)
    assert out[0]["reason"].startswith("judge_truncated")
    assert out[1]["reason"].startswith("judge_request_failed")
    assert "HTTP 400" in out[1]["reason"]
    assert out[2]["reason"].startswith("judge_truncated")


def test_a_judge_without_a_seed_is_reasked_with_one() -> None:
    seen: list[object] = []

    def garbage(calls: Sequence[Call]) -> list[FakeResult]:
        seen.extend(dict(c.params)["seed"] for c in calls)
        return [FakeResult("no verdicts here") for _ in calls]

    rows = [_row("p", ["a", "b"])]
    judge = _judge(params=(("seed", None),), max_reasks=1)
    [out] = rating_rows(rows, judge_all(plan_tasks(rows, judge), garbage, judge.max_reasks), judge)
    assert seen == [None, 2000] and out["reason"].startswith("judge_unparseable")


def test_multi_aspect_scores_are_the_mean_and_na_is_left_out() -> None:
    def per_aspect(calls: Sequence[Call]) -> list[FakeResult]:
        out = []
        for call in calls:
            text = call.messages[-1]["content"]
            if "for honesty" in text:
                out.append(
                    FakeResult(
                        json.dumps(
                            {
                                "answer_1": {"rationale": "r", "rating": "N/A"},
                                "answer_2": {"rationale": "r", "rating": 2},
                            }
                        )
                    )
                )
            else:
                out.append(
                    FakeResult(
                        json.dumps(
                            {
                                "answer_1": {"rationale": "r", "error_kind": "none", "rating": 5},
                                "answer_2": {"rationale": "r", "error_kind": "none", "rating": 4},
                            }
                        )
                    )
                )
        return out

    rows = [_row("p", ["a", "b"])]
    judge = _judge(aspects=("helpfulness", "honesty"), shuffle=False)
    [out] = rating_rows(rows, judge_all(plan_tasks(rows, judge), per_aspect, 0), judge)
    assert [j["aspect"] for j in out["judgements"]] == ["helpfulness", "honesty"]
    assert out["judgements"][1]["ratings"] == [None, 2]
    assert out["scores"] == [5.0, 3.0]


def test_upstream_failures_are_not_judged() -> None:
    rows = [_row("p", [None, None], status="failed")]
    judge = _judge()
    assert plan_tasks(rows, judge) == []
    [out] = rating_rows(rows, [], judge)
    assert out["status"] == "failed" and out["reason"] == "no_answer: x"


def test_structured_output_flavours() -> None:
    rows = [_row("p", ["a", "b"])]
    fmt = {
        f: plan_tasks(rows, _judge(flavour=f))[0].call.response_format
        for f in ("json_object_schema", "json_schema", "tgi_grammar", "none")
    }
    assert fmt["json_object_schema"]["type"] == "json_object" and "schema" in fmt["json_object_schema"]
    assert fmt["json_schema"]["json_schema"]["schema"]["required"] == ["answer_1", "answer_2"]
    assert fmt["tgi_grammar"] == {"type": "json", "value": fmt["json_object_schema"]["schema"]}
    assert fmt["none"] is None


def test_the_judge_sees_the_conversation_the_answers_continue() -> None:
    plain = _row("p1", ["a", "b"])
    system = _row("p2", ["a", "b"]) | {"system_prompt": "Answer in French."}
    chat = _row("p3", ["a", "b"]) | {
        "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A prime: 7."},
            {"role": "user", "content": "Another one?"},
        ]
    }
    shown = [task.call.messages[1]["content"] for task in plan_tasks([plain, system, chat], _judge())]
    assert "## Instruction\nQ\n\n## Answer 1" in shown[0]
    assert "[system]\nAnswer in French.\n\n[user]\nQ\n\n## Answer 1" in shown[1]
    assert "[user]\nQ\n\n[assistant]\nA prime: 7.\n\n[user]\nAnother one?\n\n## Answer 1" in shown[2]


def test_a_reask_that_gets_no_answer_keeps_the_unreadable_answer_and_its_text() -> None:
    answers = iter(
        [
            [FakeResult("I think both are fine.")],
            [FakeResult(None, error_kind="http_error", error="HTTP 400: Unsupported parameter: 'seed'")],
        ]
    )
    rows = [_row("p", ["a", "b"])]
    judge = _judge(max_reasks=1)
    [out] = rating_rows(rows, judge_all(plan_tasks(rows, judge), lambda calls: next(answers), 1), judge)
    assert out["status"] == "failed" and out["reason"].startswith("judge_unparseable")
    assert "re-ask 2 got no answer: judge_request_failed: http_error: HTTP 400" in out["reason"]
    [judgement] = out["judgements"]
    assert judgement["raw_text"] == "I think both are fine." and judgement["attempts"] == 2
    assert judgement["prompt_tokens"] == 20
