from __future__ import annotations

from pref_assets.core.quality import duplicate_prompts, empty_answers, judge_report, pair_report, rating_histogram
from pref_assets.core.rows import GenerationRow, Judgement, PairRow, PromptRow, RatingRow


def _judgement(
    ratings: list,
    shown: list[int],
    *,
    aspect: str = "overall-rating",
    pass_index: int = 0,
    failure: str | None = None,
    attempts: int = 1,
) -> Judgement:
    return Judgement(
        aspect=aspect,
        pass_index=pass_index,
        ratings=ratings,
        shown_order=shown,
        failure=failure,
        attempts=attempts,
    )


def _row(*judgements: Judgement) -> RatingRow:
    return RatingRow(generation_models=["a", "b"], judgements=list(judgements))


def test_first_position_win_rate_counts_only_decided_judgements() -> None:
    rows = [
        _row(_judgement([5, 2], [0, 1])),  # first shown (a) wins
        _row(_judgement([5, 2], [1, 0])),  # first shown (b) loses
        _row(_judgement([3, 3], [0, 1])),  # tie: undecided
        _row(_judgement([1, 4], [1, 0])),  # first shown (b) wins
        _row(_judgement([None, None], [0, 1], failure="judge_unparseable: x", attempts=2)),
    ]
    report = judge_report(rows)
    assert report["first_position_decided"] == 3
    assert report["first_position_win_rate"] == round(2 / 3, 4)
    assert report["first_position_win_rate_if_unbiased"] == 0.5
    assert report["parse_success_rate"] == 0.8
    assert report["failures_by_reason"] == {"judge_unparseable": 1}
    assert report["reasks"] == 1


def test_position_swap_agreement() -> None:
    rows = [
        _row(_judgement([5, 2], [0, 1]), _judgement([4, 1], [1, 0], pass_index=1)),
        _row(_judgement([5, 2], [0, 1]), _judgement([2, 5], [1, 0], pass_index=1)),
    ]
    assert judge_report(rows)["position_swap_agreement"] == 0.5


def test_histogram_per_model_includes_na_and_skips_failures() -> None:
    rows = [
        _row(
            _judgement([None, 4], [0, 1], aspect="honesty"),
            _judgement([5, 4], [1, 0]),
            _judgement([1, 1], [0, 1], failure="judge_truncated"),
        )
    ]
    assert rating_histogram(rows) == {"a": {"5": 1, "N/A": 1}, "b": {"4": 2}}


def test_pair_report() -> None:
    rows = [
        PairRow(status="ok", reason=None, margin=2.0),
        PairRow(status="ok", reason=None, margin=1.0),
        PairRow(status="skipped", reason="all_tied", margin=None),
        PairRow(status="skipped", reason="fewer_than_two_rated_answers", margin=None),
        PairRow(status="failed", reason="judge_unparseable: x", margin=None),
    ]
    assert pair_report(rows) == {
        "pairs": 2,
        "judged": 4,
        "ties": 1,
        "tie_rate": 0.25,
        "mean_margin": 1.5,
        "skipped_by_reason": {"all_tied": 1, "fewer_than_two_rated_answers": 1},
    }


def test_prompts_skipped_before_the_judge_do_not_count_as_judged() -> None:
    rows = [
        PairRow(status="skipped", failed_stage="dpo_pairs", reason="all_tied", margin=None),
        PairRow(status="ok", failed_stage=None, reason=None, margin=1.0),
        PairRow(status="skipped", failed_stage="ratings", reason="fewer_than_two_answers", margin=None),
    ]
    report = pair_report(rows)
    assert (report["judged"], report["ties"], report["tie_rate"]) == (2, 1, 0.5)


def test_empty_batch_reports_no_rates() -> None:
    assert judge_report([])["first_position_win_rate"] is None
    assert pair_report([])["tie_rate"] is None


def test_empty_answers_count_only_calls_that_came_back() -> None:
    rows = [
        GenerationRow(status="ok", reason=None),
        GenerationRow(status="failed", reason="empty_answer"),
        GenerationRow(status="failed", reason="http_error: HTTP 500"),  # no answer at all: not counted
        GenerationRow(status="failed", reason="upstream_failed: empty_instruction"),
    ]
    assert empty_answers(rows) == (1, 2)


def test_duplicate_prompts_count_repeats_among_the_whole_batch() -> None:
    rows = [
        PromptRow(status="ok"),
        PromptRow(status="failed", reason="duplicate: same prompt as f.jsonl:1"),
        PromptRow(status="failed", reason="empty_instruction: empty or whitespace only"),
        PromptRow(status="failed", reason=None),
    ]
    assert duplicate_prompts(rows) == (1, 4)
