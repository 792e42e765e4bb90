from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pref_assets.core.pairs import (
    ALL_TIED,
    SMALL_MARGIN,
    TOO_FEW,
    NoPair,
    Pair,
    format_pair,
    pair_row,
    select_pair,
)
from pref_assets.core.rows import GroupedRow, RatingRow


@pytest.mark.parametrize(
    ("scores", "min_margin", "expected"),
    [
        ([5, 2], 0, Pair(0, 1, 3)),
        ([2, 5], 0, Pair(1, 0, 3)),
        ([3, 5, 1], 0, Pair(1, 2, 4)),
        ([5, 5, 1], 0, Pair(0, 2, 4)),
        ([5, 1, 1], 0, Pair(0, 2, 4)),
        ([4, 4], 0, NoPair(ALL_TIED)),
        ([3, 3, 3], 0, NoPair(ALL_TIED)),
        ([5], 0, NoPair(TOO_FEW)),
        ([], 0, NoPair(TOO_FEW)),
        ([None, 4], 0, NoPair(TOO_FEW)),
        ([None, 4, 2], 0, Pair(1, 2, 2)),
        ([4, None, 4], 0, NoPair(ALL_TIED)),
        ([4, 3], 2, NoPair(SMALL_MARGIN)),
        ([5, 3], 2, Pair(0, 1, 2)),
        ([4.5, 4.0], 0, Pair(0, 1, 0.5)),
    ],
)
def test_select_pair(scores: list, min_margin: float, expected: Pair | NoPair) -> None:
    assert select_pair(scores, min_margin=min_margin) == expected


@pytest.mark.parametrize("scores", [[1, 1], [2, 2, 2, 2], [5, 5, 1, 1], [3, 1, 3, 1]])
def test_chosen_is_never_rejected(scores: list[int]) -> None:
    choice = select_pair(scores)
    assert isinstance(choice, NoPair) or choice.chosen != choice.rejected


def _row(**extra: Any) -> RatingRow:
    base = {
        "prompt_id": "p",
        "instruction": "Q?",
        "system_prompt": None,
        "messages": None,
        "generation_models": ["m1", "m2"],
        "generations": ["good", "bad"],
        "scores": [5.0, 2.0],
        "status": "ok",
        "failed_stage": None,
        "reason": None,
    }
    return RatingRow(**(base | extra))


def test_text_pair_layout() -> None:
    row = pair_row(_row(system_prompt="Be kind."))
    assert row.prompt == "Q?"
    assert row.chosen == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "good"},
    ]
    assert row.rejected[-1] == {"role": "assistant", "content": "bad"}
    assert (row.chosen_model, row.chosen_rating, row.rejected_model, row.rejected_rating) == (
        "m1",
        5.0,
        "m2",
        2.0,
    )
    assert row.status == "ok"


def test_chat_pair_layout_keeps_the_conversation() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell a joke"},
    ]
    out = format_pair(GroupedRow(instruction="Hi", system_prompt=None, messages=messages), "A", "B")
    assert out.prompt == "Hi"
    assert out.chosen == [*messages, {"role": "assistant", "content": "A"}]
    assert out.rejected == [*messages, {"role": "assistant", "content": "B"}]


def test_tied_prompt_is_skipped_with_reason() -> None:
    row = pair_row(_row(scores=[3.0, 3.0]))
    assert (row.status, row.reason, row.chosen) == ("skipped", ALL_TIED, None)


def test_failed_prompt_stays_failed() -> None:
    row = pair_row(_row(status="failed", failed_stage="ratings", reason="judge_unparseable: x", scores=[None, None]))
    assert (row.status, row.failed_stage, row.reason) == (
        "failed",
        "ratings",
        "judge_unparseable: x",
    )


def test_identical_answer_texts_make_no_pair() -> None:
    row = pair_row(_row(generations=["same answer", "same answer "], scores=[5.0, 1.0]))
    assert (row.status, row.reason, row.chosen) == ("skipped", "identical_answers", None)


def test_an_answer_identical_to_the_chosen_one_gives_way_to_a_different_one() -> None:
    row = _row(generation_models=["a", "b", "c"], generations=["Paris.", "Lyon.", "Paris. "], scores=[5.0, 1.0, 1.0])
    out = pair_row(row)
    assert out.status == "ok"
    assert (out.chosen_model, out.rejected_model, out.margin) == ("a", "b", 4.0)
    row = replace(row, generations=["Paris.", "Paris.", "Paris. "], scores=[5.0, 1.0, 1.0])
    assert pair_row(row).reason == "identical_answers"


def test_random_lower_draws_any_lower_answer_deterministically() -> None:
    scores = [2.0, 5.0, 1.0, 4.0, 5.0]
    picks = {select_pair(scores, rejected="random_lower", seed=f"p{i}").rejected for i in range(60)}
    assert picks == {0, 2, 3}
    assert select_pair(scores, rejected="random_lower", seed="x") == select_pair(
        scores, rejected="random_lower", seed="x"
    )
    assert all(select_pair(scores, rejected="random_lower", seed=f"p{i}").chosen == 1 for i in range(20))


def test_random_lower_respects_the_margin() -> None:
    picks = {
        select_pair([5.0, 4.0, 2.0, 1.0], min_margin=2, rejected="random_lower", seed=f"s{i}").rejected
        for i in range(40)
    }
    assert picks == {2, 3}


def test_unknown_rejected_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="rejected policy"):
        select_pair([5.0, 1.0], rejected="median")


def test_a_pair_among_several_candidates_names_them_their_principles_and_the_agreeing_judges() -> None:
    row = RatingRow(
        prompt_id="p", instruction="Q", generation_models=["a", "a", "b", "b"],
        candidate_ids=["r/a/0", "r/a/1", "r/b/0", "r/b/1"],
        generation_principles=["honesty", "brevity", None, "honesty"],
        generations=["A0", "A1", "B0", "B1"], judges=["j1", "j2"],
        judge_scores=[[3, 5, 2, 1], [3, 4, 4, 2]], scores=[3, 4.5, 3, 1.5],
    )  # fmt: skip
    pair = pair_row(row)
    assert (pair.chosen_model, pair.rejected_model) == ("a", "b")
    assert (pair.chosen_candidate_id, pair.rejected_candidate_id) == ("r/a/1", "r/b/1")
    assert (pair.chosen_principle, pair.rejected_principle) == ("brevity", "honesty")
    assert pair.agreeing_judges == ["j1", "j2"]
    split = pair_row(replace(row, judge_scores=[[3, 5, 2, 1], [3, 1, 4, 2]]))
    assert split.agreeing_judges == ["j1"]


def test_a_row_stored_before_candidates_pairs_without_candidate_ids() -> None:
    row = RatingRow(prompt_id="p", instruction="Q", generation_models=["a", "b"], generations=["A", "B"],
                    scores=[5, 1])  # fmt: skip
    pair = pair_row(row)
    assert pair.ok and pair.chosen_candidate_id is None and pair.agreeing_judges == []
