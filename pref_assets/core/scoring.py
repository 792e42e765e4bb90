"""Map judge verdicts back to model order and combine aspects into one score per answer."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from pref_assets.core.judge import Verdict


def map_back(verdicts: Sequence[Verdict], shown: Sequence[int], n_models: int) -> list[Verdict | None]:
    """Return verdicts in model order; ``shown[k]`` is the model index shown at position k."""
    if len(verdicts) != len(shown):
        raise ValueError(f"{len(verdicts)} verdicts for {len(shown)} shown answers")
    out: list[Verdict | None] = [None] * n_models
    for verdict, index in zip(verdicts, shown, strict=True):
        out[index] = verdict
    return out


def combine_scores(by_aspect: Mapping[Hashable, Sequence[int | None]], n_models: int) -> list[float | None]:
    """Return per answer the mean of its ratings over aspects (and passes); N/A and unrated are left out.

    An answer with no rating in any aspect has no score (None) and cannot enter a pair.
    """
    scores: list[float | None] = []
    for i in range(n_models):
        values = [r[i] for r in by_aspect.values() if r[i] is not None]
        scores.append(sum(values) / len(values) if values else None)
    return scores
