"""The judge's quality report for one batch: histograms, failure rates, position bias, ties, margins."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pref_assets.core import status
from pref_assets.core.generation import EMPTY_ANSWER
from pref_assets.core.pairs import ALL_TIED
from pref_assets.core.prompts import DUPLICATE
from pref_assets.core.rows import GenerationRow, Judgement, PairRow, PromptRow, RatingRow


def judge_report(rows: Sequence[RatingRow]) -> dict[str, Any]:
    """Return rating histograms per model, failure counts, re-asks and position-bias figures."""
    judgements = [j for row in rows for j in row.judgements or ()]
    failed = [j for j in judgements if j.failure]
    wins, decided, expected = _first_position(judgements)
    agree, compared = _agreement(rows)
    return {
        "judge_calls": len(judgements),
        "parse_success_rate": _rate(len(judgements) - len(failed), len(judgements)),
        "failures_by_reason": dict(Counter(j.failure.split(":")[0] for j in failed).most_common()),
        "reasks": sum(j.attempts - 1 for j in judgements),
        "rating_histogram": rating_histogram(rows),
        "first_position_win_rate": _rate(wins, decided),
        "first_position_win_rate_if_unbiased": round(expected, 4) if decided else None,
        "first_position_decided": decided,
        "position_swap_agreement": _rate(agree, compared),
    }


def rating_histogram(rows: Iterable[RatingRow]) -> dict[str, dict[str, int]]:
    """Return, per model, how often each rating (or N/A) was given, over every aspect and pass."""
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        for judgement in row.judgements or ():
            if judgement.failure:
                continue
            for slot in judgement.shown_order:
                rating = judgement.ratings[slot]
                model = row.generation_models[slot]
                counts.setdefault(model, Counter())["N/A" if rating is None else str(rating)] += 1
    return {model: dict(sorted(c.items())) for model, c in counts.items()}


def _first_position(judgements: Sequence[Judgement]) -> tuple[int, int, float]:
    wins, decided, expected = 0, 0, 0.0
    for j in judgements:
        shown = [(slot, j.ratings[slot]) for slot in j.shown_order]
        rated = [r for _, r in shown if r is not None]
        if j.failure or len(shown) < 2 or len(rated) < 2 or rated.count(max(rated)) > 1:
            continue
        decided += 1
        expected += 1 / len(shown)
        wins += shown[0][1] == max(rated)
    return wins, decided, expected / decided if decided else 0.0


def _agreement(rows: Sequence[RatingRow]) -> tuple[int, int]:
    agree, compared = 0, 0
    for row in rows:
        passes: dict[tuple[str | None, str | None, int], dict[int, Sequence[int | None]]] = {}
        for j in row.judgements or ():
            if not j.failure:
                passes.setdefault((j.judge, j.aspect, j.part), {})[j.pass_index] = j.ratings
        for by_pass in passes.values():
            if len(by_pass) == 2:
                compared += 1
                agree += _best(by_pass[0]) == _best(by_pass[1])
    return agree, compared


def _best(ratings: Sequence[int | None]) -> set[int]:
    rated = [r for r in ratings if r is not None]
    return {i for i, r in enumerate(ratings) if rated and r == max(rated)}


def pair_report(rows: Sequence[PairRow]) -> dict[str, Any]:
    """Return pair counts, the tie rate among judged prompts (rows skipped before the judge do not count), skip
    reasons and the mean margin."""
    pairs = [r for r in rows if r.ok]
    skipped = [r for r in rows if r.status == status.SKIPPED]
    judged = len(pairs) + sum(r.failed_stage in (None, status.STAGE_PAIRS) for r in skipped)
    ties = sum(r.reason == ALL_TIED for r in skipped)
    margins = [r.margin for r in pairs]
    return {
        "pairs": len(pairs),
        "judged": judged,
        "ties": ties,
        "tie_rate": _rate(ties, judged),
        "skipped_by_reason": dict(Counter(r.reason for r in skipped).most_common()),
        "mean_margin": round(sum(margins) / len(margins), 4) if margins else None,
    }


def duplicate_prompts(rows: Sequence[PromptRow]) -> tuple[int, int]:
    """Return how many prompts of a batch repeat an earlier one (kept as failed rows), and the batch's size."""
    return sum((r.reason or "").startswith(DUPLICATE) for r in rows), len(rows)


def empty_answers(rows: Sequence[GenerationRow]) -> tuple[int, int]:
    """Return how many generation calls came back without text, and how many came back at all."""
    empty = sum(r.reason == EMPTY_ANSWER for r in rows)
    return empty, empty + sum(r.ok for r in rows)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
