"""A panel of judges: combining their scores, and how far they agree.

Agreement is measured on each judge's score per answer (its mean rating over aspects, passes and parts):

- Krippendorff's alpha (interval metric): the units are a batch's answers, the coders the judges. Alpha is
  1 - D_o / D_e, observed over expected disagreement, from the coincidences of values within units: 1 is perfect
  agreement, 0 agreement at chance level. An answer scored by one judge only is not pairable and is left out.
- Pairwise rank agreement: for two judges, over every two answers of one prompt that both scored, the share of
  answer pairs they order the same way (both higher, both lower, or both tied).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from typing import Any

from pref_assets.core.rows import RatingRow

Distance = Callable[[float, float], float]


def interval(a: float, b: float) -> float:
    """Return the interval-metric distance of two values: their squared difference."""
    return (a - b) ** 2


def panel_scores(judge_scores: Sequence[Sequence[float | None]], n: int) -> list[float | None]:
    """Return per answer slot the mean of the judges' scores (a judge without a score for the slot left out)."""
    out: list[float | None] = []
    for slot in range(n):
        values = [scores[slot] for scores in judge_scores if scores[slot] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def krippendorff_alpha(units: Iterable[Sequence[float | None]], distance: Distance = interval) -> float | None:
    """Return Krippendorff's alpha of ``units``, each the values the coders gave one unit (None: not coded).

    Units with fewer than two values are not pairable and are left out. None when no unit is pairable or every
    pairable value is the same (the expected disagreement is 0: alpha is undefined).
    """
    pairable = [[v for v in unit if v is not None] for unit in units]
    pairable = [values for values in pairable if len(values) >= 2]
    values = [v for unit in pairable for v in unit]
    total = len(values)
    if total < 2:
        return None
    observed = sum(
        sum(distance(a, b) for i, a in enumerate(unit) for j, b in enumerate(unit) if i != j) / (len(unit) - 1)
        for unit in pairable
    ) / total
    counts = Counter(values)
    expected = sum(ca * cb * distance(a, b) for a, ca in counts.items() for b, cb in counts.items() if a != b)
    expected /= total * (total - 1)
    if expected == 0:
        return None
    return 1 - observed / expected


def pairwise_rank_agreement(rows: Sequence[RatingRow]) -> dict[str, dict[str, Any]]:
    """Return per two judges (``a ~ b``) how many answer pairs both scored and the share they ordered alike."""
    counts: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if not row.ok or not row.judges or len(row.judges) < 2:
            continue
        by_judge = dict(zip(row.judges, row.judge_scores, strict=True))
        for a, b in combinations(sorted(by_judge), 2):
            agree, compared = _ordered_alike(by_judge[a], by_judge[b])
            tally = counts.setdefault((a, b), [0, 0])
            tally[0] += agree
            tally[1] += compared
    return {f"{a} ~ {b}": {"answer_pairs": c, "agreement": _rate(g, c)} for (a, b), (g, c) in counts.items()}


def _ordered_alike(first: Sequence[float | None], second: Sequence[float | None]) -> tuple[int, int]:
    both = [i for i in range(len(first)) if first[i] is not None and second[i] is not None]
    pairs = list(combinations(both, 2))
    agree = sum(_sign(first[i] - first[j]) == _sign(second[i] - second[j]) for i, j in pairs)
    return agree, len(pairs)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def agreeing_judges(row: RatingRow, chosen: int, rejected: int) -> list[str]:
    """Return the judges of ``row`` whose own scores put answer ``chosen`` strictly above ``rejected``."""
    return [
        judge
        for judge, scores in zip(row.judges or (), row.judge_scores or (), strict=True)
        if scores[chosen] is not None and scores[rejected] is not None and scores[chosen] > scores[rejected]
    ]


def panel_report(rows: Sequence[RatingRow], panel: Sequence[str], min_judges: int) -> dict[str, Any]:
    """Return a batch's panel figures: the judges, inter-judge agreement (alpha and pairwise), rows rated by fewer
    judges than the panel, failures per judge, and the anchor drift of answers judged in several parts."""
    ok = [r for r in rows if r.ok and r.judges]
    units = [
        [dict(zip(r.judges, r.judge_scores, strict=True)).get(j, [None] * len(r.generation_models))[slot]
         for j in panel]
        for r in ok
        for slot in range(len(r.generation_models))
    ]  # fmt: skip
    alpha = krippendorff_alpha(units) if len(panel) > 1 else None
    failures = Counter(f.split(":", 1)[0] for r in rows for f in r.judge_failures or ())
    drift, compared = anchor_drift(rows)
    return {
        "panel": list(panel),
        "min_judges": min_judges,
        "inter_judge_alpha": None if alpha is None else round(alpha, 4),
        "inter_judge_rank_agreement": pairwise_rank_agreement(rows) if len(panel) > 1 else {},
        "rows_rated_by_part_of_panel": sum(len(r.judges) < len(panel) for r in ok),
        "judge_failures_by_judge": dict(failures.most_common()),
        "parts_anchor_mean_abs_diff": drift,
        "parts_anchor_comparisons": compared,
    }


def anchor_drift(rows: Sequence[RatingRow]) -> tuple[float | None, int]:
    """Return the mean absolute difference between an anchor answer's rating in the first part and in each later
    part of the same judge, aspect and pass, and how many such comparisons there were."""
    diffs: list[float] = []
    for row in rows:
        calls: dict[tuple[str | None, str | None, int], dict[int, Sequence[int | None]]] = {}
        shown: dict[tuple[str | None, str | None, int], list[set[int]]] = {}
        for j in row.judgements or ():
            if j.failure is None:
                calls.setdefault((j.judge, j.aspect, j.pass_index), {})[j.part] = j.ratings
                shown.setdefault((j.judge, j.aspect, j.pass_index), []).append(set(j.shown_order))
        for key, parts in calls.items():
            if len(parts) < 2 or 0 not in parts:
                continue
            common = set.intersection(*shown[key])
            for anchor in common:
                first = parts[0][anchor]
                diffs += [abs(first - r[anchor]) for p, r in parts.items()
                          if p and first is not None and r[anchor] is not None]  # fmt: skip
    return (round(sum(diffs) / len(diffs), 4) if diffs else None), len(diffs)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
