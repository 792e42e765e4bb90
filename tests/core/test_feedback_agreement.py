"""Judge-human agreement: pairwise accuracy, top-answer agreement and Kendall's tau over reviewed prompts."""

from __future__ import annotations

import json

import pytest

from pref_assets.core.feedback import (
    agreement_from_ratings,
    agreement_from_records,
    human_scores,
    judge_human_agreement,
    record_judge_scores,
)
from pref_assets.core.records import build_record
from pref_assets.core.rows import FeedbackRow, RatingRow, RecordRow


def _rated(i: int, scores: list[float | None]) -> RatingRow:
    return RatingRow(row_id=f"b#{i}", prompt_id=f"p{i}", instruction="Q", topic="t", judge_model="j",
                     generation_models=[f"m{k}" for k in range(len(scores))],
                     generations=[f"a{k}" for k in range(len(scores))], scores=scores)  # fmt: skip


def _feedback(i: int, ratings: list[float | None], ranking: list[float | None] | None = None) -> FeedbackRow:
    return FeedbackRow(row_id=f"b#{i}", prompt_id=f"p{i}", human_ratings=ratings,
                       human_ranking=ranking or [None] * len(ratings), submitted=1)  # fmt: skip


def test_same_order_agrees_fully_and_the_reverse_not_at_all() -> None:
    same = judge_human_agreement([([5, 3, 1], [4.0, 2.5, 1.0])])
    assert same.pairwise_accuracy == 1.0 and same.kendall_tau == 1.0 and same.top_agreement == 1.0
    reverse = judge_human_agreement([([1, 3, 5], [4.0, 2.5, 1.0])])
    assert reverse.pairwise_accuracy == 0.0 and reverse.kendall_tau == -1.0 and reverse.top_agreement == 0.0


def test_ties_on_either_side() -> None:
    judge_tie = judge_human_agreement([([4, 4, 1], [5.0, 3.0, 1.0])])
    assert (judge_tie.pairs, judge_tie.agreed, judge_tie.judge_ties) == (3, 2, 1)
    assert judge_tie.top_prompts == 1 and judge_tie.top_agreed == 0, "a judge tie at the top is no agreement"
    assert judge_tie.kendall_tau == pytest.approx(2 / (2 * 3) ** 0.5, abs=1e-4)
    human_tie = judge_human_agreement([([5, 3], [2.0, 2.0])])
    assert human_tie.pairs == 0 and human_tie.pairwise_accuracy is None and human_tie.kendall_tau is None
    assert human_tie.prompts == 1 and human_tie.top_prompts == 0


def test_prompts_with_fewer_than_two_scored_answers_do_not_count() -> None:
    agreement = judge_human_agreement([([5, None], [5.0, 1.0]), ([5, 1], [4.0, 2.0]), ([3, 1], [None, None])])
    assert agreement.prompts == 1 and agreement.pairs == 1 and agreement.pairwise_accuracy == 1.0
    assert agreement.as_dict()["pairwise_accuracy"] == 1.0 and agreement.as_dict()["tau_prompts"] == 1


def test_ranking_only_labels_count_with_rank_one_best() -> None:
    assert human_scores(_feedback(0, [None, None], [2.0, 1.0])) == [-2.0, -1.0]
    agreement = agreement_from_ratings([_rated(0, [2.0, 4.0])], [_feedback(0, [None, None], [2.0, 1.0])])
    assert agreement.pairwise_accuracy == 1.0


def test_from_pushed_records_and_from_ratings_alike() -> None:
    rated = [_rated(0, [5.0, 2.0]), _rated(1, [1.0, 3.0]), _rated(2, [2.0, 4.0])]
    labelled = [_feedback(0, [5.0, 1.0]), _feedback(1, [4.0, 2.0]), _feedback(2, [None, None])]
    records = [RecordRow(row_id=r.row_id, prompt_id=r.prompt_id,
                         record=json.dumps(build_record(r, dataset="d", batch="b"))) for r in rated]  # fmt: skip
    assert record_judge_scores(records[0].record, 2) == [5.0, 2.0]
    assert record_judge_scores("not json", 2) == [None, None]
    from_records = agreement_from_records(records, labelled, 2)
    assert from_records == agreement_from_ratings(rated, labelled)
    assert from_records.prompts == 2 and from_records.pairwise_accuracy == 0.5 and from_records.kendall_tau == 0.0
