from __future__ import annotations

import pytest

from pref_assets.core.panel import (
    Distance,
    agreeing_judges,
    anchor_drift,
    interval,
    krippendorff_alpha,
    pairwise_rank_agreement,
    panel_report,
    panel_scores,
)
from pref_assets.core.rows import Judgement, RatingRow

N = None


def nominal(a: float, b: float) -> float:
    """The nominal-metric distance (0 when equal, else 1): checks alpha against the published nominal figures."""
    return 0.0 if a == b else 1.0


# Krippendorff's reference example (4 coders, 12 units, missing values): nominal 0.743, interval 0.849.
REFERENCE = list(
    zip(
        [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
        [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
        strict=True,
    )
)


@pytest.mark.parametrize(
    ("units", "distance", "expected"),
    [
        # By hand: pairable values 1, 2, 3, 3 (n = 4). Interval: D_o = (1 + 1) / 1 / 4 = 0.5,
        # D_e = 2 * (1*1*1 + 1*2*4 + 1*2*1) / (4 * 3) = 22/12, alpha = 1 - 0.5 / (22/12) = 8/11.
        ([[1, 2], [3, 3], [N, 4]], interval, 8 / 11),
        # Nominal: D_o = 0.5, D_e = 2 * (1 + 2 + 2) / 12 = 10/12, alpha = 1 - 0.5 / (10/12) = 0.4.
        ([[1, 2], [3, 3], [N, 4]], nominal, 0.4),
        # Perfect agreement over different values.
        ([[1, 1], [4, 4], [2.5, 2.5, 2.5]], interval, 1.0),
        # Systematic disagreement: the two judges always swap the two values.
        ([[1, 5], [5, 1]], interval, 1 - (16 * 4 / 4) / (2 * 2 * 16 * 2 / 12)),
        (REFERENCE, nominal, 0.743),
        (REFERENCE, interval, 0.849),
    ],
)
def test_krippendorff_alpha_matches_hand_and_published_values(
    units: list[list[float | None]], distance: Distance, expected: float
) -> None:
    assert krippendorff_alpha(units, distance) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("units", [[], [[1, N], [N, 2]], [[3, 3], [3, 3, 3]]])
def test_alpha_is_undefined_without_pairable_or_varying_values(units: list[list[float | None]]) -> None:
    assert krippendorff_alpha(units) is None


def _rated(judges: list[str], scores: list[list[float | None]], **extra: object) -> RatingRow:
    n = len(scores[0]) if scores else 2
    return RatingRow(prompt_id="p", generation_models=[f"m{i}" for i in range(n)], judges=judges,
                     judge_scores=scores, **extra)  # fmt: skip


def test_pairwise_rank_agreement_counts_answer_pairs_ordered_alike() -> None:
    rows = [
        # pairs (0,1) (0,2) (1,2): a orders <, <, <; b orders <, <, > -> 2 of 3 alike
        _rated(["a", "b"], [[1, 2, 3], [1, 4, 3]]),
        # slot 2 unscored by b: only (0,1) is compared; both tie -> alike
        _rated(["a", "b"], [[2, 2, 5], [3, 3, N]]),
        _rated(["a"], [[1, 2, 3]]),  # one judge: nothing to compare
    ]
    assert pairwise_rank_agreement(rows) == {"a ~ b": {"answer_pairs": 4, "agreement": 0.75}}


def test_panel_score_is_the_mean_of_the_judges_scores() -> None:
    assert panel_scores([[4.0, 2.0, N], [3.0, N, N]], 3) == [3.5, 2.0, None]


def test_agreeing_judges_are_those_whose_own_scores_rank_chosen_above_rejected() -> None:
    row = _rated(["a", "b", "c"], [[5, 1], [2, 2], [4, N]])
    assert agreeing_judges(row, 0, 1) == ["a"]
    assert agreeing_judges(row, 1, 0) == []


def _judgement(part: int, shown: list[int], ratings: list[int | None], judge: str = "a") -> Judgement:
    return Judgement(judge=judge, aspect="overall-rating", part=part, shown_order=shown, ratings=ratings)


def test_anchor_drift_compares_the_anchor_across_parts() -> None:
    # anchor is slot 0: rated 4 in part 0, 2 in part 1, 4 in part 2 -> diffs 2 and 0
    judgements = [
        _judgement(0, [0, 1, 2], [4, 3, 3, N, N, N, N]),
        _judgement(1, [3, 0, 4], [2, N, N, 5, 1, N, N]),
        _judgement(2, [5, 6, 0], [4, N, N, N, N, 2, 2]),
    ]
    row = _rated(["a"], [[1] * 7], judgements=judgements)
    assert anchor_drift([row]) == (1.0, 2)
    assert anchor_drift([_rated(["a"], [[1, 2]], judgements=[_judgement(0, [0, 1], [1, 2])])]) == (None, 0)


def test_panel_report_names_failures_and_rows_rated_by_part_of_the_panel() -> None:
    rows = [
        _rated(["a", "b"], [[1, 5], [2, 4]]),
        _rated(["b"], [[3, 1]], judge_failures=["a: judge_unparseable: empty answer"]),
        _rated([], [], status="failed", judge_failures=["a: judge_truncated: x", "b: judge_truncated: y"]),
    ]
    report = panel_report(rows, ["a", "b"], 1)
    assert report["panel"] == ["a", "b"] and report["min_judges"] == 1
    assert report["rows_rated_by_part_of_panel"] == 1
    assert report["judge_failures_by_judge"] == {"a": 2, "b": 1}
    assert report["inter_judge_rank_agreement"] == {"a ~ b": {"answer_pairs": 1, "agreement": 1.0}}
    # units (1, 2), (5, 4), (3, -), (1, -): alpha over the two pairable units
    assert report["inter_judge_alpha"] == pytest.approx(krippendorff_alpha([[1, 2], [5, 4]]), abs=1e-4)
    assert panel_report(rows[:1], ["a"], 1)["inter_judge_alpha"] is None
