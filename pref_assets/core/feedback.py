"""Human labels read back from Argilla, and the final pairs: decided by people where they answered.

Inputs are Argilla's JSON records and responses as dicts (``{"status": "submitted", "values":
{"rating_1": {"value": 4}, "ranking": {"value": [{"value": "response_1", "rank": 1}, ...]}}}``).
Ratings are averaged per answer over the annotators' submitted responses; a ranking is averaged as
the mean rank per answer (1 = best). A prompt's pair comes from the human ratings when there are any,
from the human ranking when people only ranked, and from the judge's scores otherwise.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pref_assets.core.ids import stable_hash
from pref_assets.core.pairs import LOWEST, pair_row
from pref_assets.core.records import field_name, rating_question
from pref_assets.core.rows import (
    FeedbackRow,
    PreferenceRow,
    RatingRow,
    RecordRow,
    StageRow,
    extend_row,
    failed,
    next_row,
    skipped,
)

STAGE = "human_feedback"
HUMAN = "human"
JUDGE = "judge"
SUBMITTED = "submitted"
NO_RESPONSE = "no_human_response"
NO_LABELS = "no_human_labels"
NOT_CONFIGURED = "argilla_not_configured"
NOT_IN_ARGILLA = "record_not_in_argilla"
RANKING = "ranking"
COMMENT = "comment"


@dataclass(frozen=True, slots=True)
class HumanLabels:
    """What the submitted responses to one record say, per answer slot in model order."""

    ratings: tuple[float | None, ...]
    rating_counts: tuple[int, ...]
    ranking: tuple[float | None, ...]
    ranking_count: int
    submitted: int
    comments: tuple[str, ...]

    def has_labels(self) -> bool:
        """Return whether anyone rated or ranked an answer."""
        return any(r is not None for r in (*self.ratings, *self.ranking))


def aggregate_responses(responses: Iterable[Mapping[str, Any]], n_answers: int) -> HumanLabels:
    """Return the mean rating and mean rank per answer over the submitted responses (drafts ignored)."""
    submitted = [r.get("values") or {} for r in responses if r.get("status") == SUBMITTED]
    ratings = [[v for v in (_rating(values, slot) for values in submitted) if v is not None]
               for slot in range(n_answers)]  # fmt: skip
    rankings = [r for r in (_ranks(values, n_answers) for values in submitted) if r is not None]
    ranks = [[r[slot] for r in rankings if r[slot] is not None] for slot in range(n_answers)]
    return HumanLabels(
        ratings=tuple(_mean(v) for v in ratings),
        rating_counts=tuple(len(v) for v in ratings),
        ranking=tuple(_mean(v) for v in ranks),
        ranking_count=len(rankings),
        submitted=len(submitted),
        comments=tuple(c for c in (_comment(values) for values in submitted) if c),
    )


def _rating(values: Mapping[str, Any], slot: int) -> float | None:
    value = (values.get(rating_question(slot)) or {}).get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ranks(values: Mapping[str, Any], n_answers: int) -> list[int | None] | None:
    """Return the rank of each slot in one ranking response; an item without a rank ranks by position."""
    items = (values.get(RANKING) or {}).get("value")
    if not isinstance(items, list) or not items:
        return None
    slots = {field_name(slot): slot for slot in range(n_answers)}
    ranks: list[int | None] = [None] * n_answers
    for position, item in enumerate(items):
        slot = slots.get(item.get("value")) if isinstance(item, Mapping) else None
        if slot is not None:
            ranks[slot] = item.get("rank") or position + 1
    return ranks


def _comment(values: Mapping[str, Any]) -> str | None:
    value = (values.get(COMMENT) or {}).get("value")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def feedback_row(record_row: RecordRow, record: Mapping[str, Any] | None, n_answers: int) -> FeedbackRow:
    """Return the human_feedback row of an argilla_records row, given its Argilla record (None: not found)."""
    out = next_row(record_row, FeedbackRow, record_id=record_row.record_id)
    if not record_row.ok:
        return out
    if record is None:
        return failed(out, STAGE, _missing_reason(record_row))
    labels = aggregate_responses(record.get("responses") or [], n_answers)
    out = replace(out, argilla_record_id=record["id"], **_label_columns(labels))
    if labels.submitted == 0:
        return skipped(out, STAGE, NO_RESPONSE)
    if not labels.has_labels():
        return skipped(out, STAGE, NO_LABELS)
    return out


def _missing_reason(record_row: RecordRow) -> str:
    if record_row.push_error:
        return f"{NOT_IN_ARGILLA}: {record_row.push_error}"
    if not record_row.pushed:
        return f"{NOT_IN_ARGILLA}: never pushed; materialize argilla_records with argilla.url set"
    return f"{NOT_IN_ARGILLA}: pushed, but not in the dataset now"


def unconfigured_row(record_row: RecordRow) -> FeedbackRow:
    """Return the human_feedback row of one argilla_records row when no Argilla URL is configured."""
    out = next_row(record_row, FeedbackRow, record_id=record_row.record_id)
    if not record_row.ok:
        return out
    return skipped(out, STAGE, f"{NOT_CONFIGURED}: set argilla.url and the API key's environment variable")


def _label_columns(labels: HumanLabels) -> dict[str, Any]:
    return {
        "human_ratings": list(labels.ratings), "rating_counts": list(labels.rating_counts),
        "human_ranking": list(labels.ranking), "ranking_count": labels.ranking_count,
        "submitted": labels.submitted, "comments": list(labels.comments),
    }  # fmt: skip


def preference_rows(
    rated: Sequence[RatingRow], labelled: Sequence[FeedbackRow], *, min_margin: float = 0.0, rejected: str = LOWEST
) -> list[PreferenceRow]:
    """Return the final pair of each rated row, with the labels of its ok feedback row: joined by ``row_id``, or by
    ``prompt_id`` for rows stored before row ids existed."""
    key = _join_key(rated, labelled)
    labels = {key(row): row for row in labelled if row.ok}
    return [preference_row(r, labels.get(key(r)), min_margin=min_margin, rejected=rejected) for r in rated]


def _join_key(*row_sets: Sequence[StageRow]) -> Callable[[StageRow], str | None]:
    if all(row.row_id for rows in row_sets for row in rows):
        return lambda row: row.row_id
    return lambda row: row.prompt_id


def preference_row(
    rating_row: RatingRow,
    feedback: FeedbackRow | None,
    *,
    min_margin: float = 0.0,
    rejected: str = LOWEST,
) -> PreferenceRow:
    """Return the final pair of one prompt and its ``pair_source``: human labels decide when present.

    Human ratings go through the same selection as the judge's scores (``select_pair``). When people
    only ranked, the mean ranks decide; such a pair has no ratings and its margin is the rank gap.
    Without usable human labels the judge's scores decide.
    """
    if feedback is None or not feedback.ok or not rating_row.ok:
        return extend_row(pair_row(rating_row, min_margin=min_margin, rejected=rejected), PreferenceRow,
                          pair_source=JUDGE)  # fmt: skip
    answered = rating_row.generations
    ratings = _only_answered(feedback.human_ratings, answered)
    if any(r is not None for r in ratings):
        pair = pair_row(replace(rating_row, scores=ratings), min_margin=min_margin, rejected=rejected)
        return extend_row(pair, PreferenceRow, pair_source=HUMAN)
    ranks = _only_answered(feedback.human_ranking, answered)
    pair = pair_row(replace(rating_row, scores=[None if r is None else -r for r in ranks]), rejected=rejected)
    return extend_row(pair, PreferenceRow, pair_source=HUMAN, chosen_rating=None, rejected_rating=None)


def _only_answered(values: Sequence[float | None], answers: Sequence[str | None]) -> list[float | None]:
    """Return ``values`` with the slots that have no answer text blanked (nothing to pair there)."""
    return [v if i < len(answers) and answers[i] is not None else None for i, v in enumerate(values)]


@dataclass(frozen=True, slots=True)
class ReviewCursor:
    """The sensor's memory: the dataset's last response activity and a fingerprint per batch."""

    activity: str | None = None
    batches: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        """Return the cursor as JSON text."""
        return json.dumps({"activity": self.activity, "batches": self.batches}, sort_keys=True)

    @staticmethod
    def decode(text: str | None) -> ReviewCursor:
        """Return the cursor stored as ``text`` (empty on the first tick)."""
        if not text:
            return ReviewCursor()
        data = json.loads(text)
        return ReviewCursor(data.get("activity"), dict(data.get("batches") or {}))


def batch_fingerprints(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Return per batch (record metadata ``batch``) a hash of its submitted responses and their times."""
    entries: dict[str, list[str]] = defaultdict(list)
    for record in records:
        batch = (record.get("metadata") or {}).get("batch")
        for response in record.get("responses") or []:
            if batch and response.get("status") == SUBMITTED:
                entries[batch].append(f"{record['id']}/{response['id']}/{response.get('updated_at')}")
    return {batch: stable_hash(*sorted(items)) for batch, items in entries.items()}


def changed_batches(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Return the batches whose submitted responses changed: new, edited, or withdrawn."""
    return sorted(b for b in before.keys() | after.keys() if before.get(b) != after.get(b))


# ---------------------------------------------------------------- judge-human agreement


@dataclass(frozen=True, slots=True)
class Agreement:
    """How often the judge orders a prompt's answers as the reviewers do, over the prompts both scored.

    ``pairs``: answer pairs the reviewers put one above the other (by mean rating, or mean rank where they only
    ranked); ``agreed``: of those, pairs the judge ordered the same way; ``judge_ties``: pairs the judge scored
    equal (counted as not agreed). ``top_agreed`` of ``top_prompts``: prompts where the judge's single best answer
    is the reviewers' single best. ``kendall_tau``: the mean over prompts of Kendall's tau-b between the judge's
    and the reviewers' scores (prompts where it is defined: ``tau_prompts``)."""

    prompts: int = 0
    pairs: int = 0
    agreed: int = 0
    judge_ties: int = 0
    top_prompts: int = 0
    top_agreed: int = 0
    tau_prompts: int = 0
    kendall_tau: float | None = None

    @property
    def pairwise_accuracy(self) -> float | None:
        """Return the share of the reviewers' ordered pairs the judge ordered alike (None: no such pair)."""
        return round(self.agreed / self.pairs, 4) if self.pairs else None

    @property
    def top_agreement(self) -> float | None:
        """Return the share of prompts whose best answer is the same for the judge and the reviewers."""
        return round(self.top_agreed / self.top_prompts, 4) if self.top_prompts else None

    def as_dict(self) -> dict[str, Any]:
        """Return the counts and the rates, for metadata and the dataset card."""
        counts = {name: getattr(self, name) for name in self.__slots__}
        return counts | {"pairwise_accuracy": self.pairwise_accuracy, "top_agreement": self.top_agreement}


def human_scores(row: FeedbackRow) -> list[float | None]:
    """Return the reviewers' score per answer slot: the mean rating where anyone rated, else minus the mean rank
    (higher is better either way)."""
    ratings = list(row.human_ratings or [])
    if any(r is not None for r in ratings):
        return ratings
    return [None if r is None else -r for r in row.human_ranking or []]


def record_judge_scores(record: str | None, n_answers: int) -> list[float | None]:
    """Return the judge's score per answer slot as pushed in a review record (its JSON, ``judge_rating_N``)."""
    try:
        metadata = (json.loads(record) if record else {}).get("metadata") or {}
    except (ValueError, AttributeError):
        return [None] * n_answers
    values = [metadata.get(f"judge_{rating_question(slot)}") for slot in range(n_answers)]
    return [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]


def judge_human_agreement(scored: Iterable[tuple[Sequence[float | None], Sequence[float | None]]]) -> Agreement:
    """Return the agreement over prompts given as (judge scores, reviewers' scores) per answer slot; a prompt counts
    when at least two of its answers have both."""
    prompts = pairs = agreed = ties = top_prompts = top_agreed = 0
    taus: list[float] = []
    for judge, human in scored:
        both = [(j, h) for j, h in zip(judge, human, strict=False) if j is not None and h is not None]
        if len(both) < 2:
            continue
        prompts += 1
        concordant = discordant = human_ties = 0
        for a in range(len(both)):
            for b in range(a + 1, len(both)):
                dj, dh = _sign(both[a][0] - both[b][0]), _sign(both[a][1] - both[b][1])
                if dh == 0:
                    human_ties += 1
                    continue
                pairs += 1
                if dj == 0:
                    ties += 1
                elif dj == dh:
                    agreed += 1
                    concordant += 1
                else:
                    discordant += 1
        top_j, top_h = _single_best([j for j, _ in both]), _single_best([h for _, h in both])
        if top_h is not None:
            top_prompts += 1
            top_agreed += top_j == top_h
        tau = _tau_b(len(both), concordant, discordant, human_ties, [j for j, _ in both])
        if tau is not None:
            taus.append(tau)
    mean_tau = round(sum(taus) / len(taus), 4) if taus else None
    return Agreement(prompts, pairs, agreed, ties, top_prompts, top_agreed, len(taus), mean_tau)


def agreement_from_records(records: Sequence[RecordRow], labelled: Sequence[FeedbackRow], n_answers: int) -> Agreement:
    """Return the agreement of one batch's pushed judge scores (``argilla_records``) with its ``human_feedback``."""
    by_row = {r.row_id: r for r in records}
    return judge_human_agreement(
        (record_judge_scores(by_row[f.row_id].record, n_answers), human_scores(f))
        for f in labelled
        if f.ok and f.row_id in by_row
    )


def agreement_from_ratings(rated: Sequence[RatingRow], labelled: Sequence[FeedbackRow]) -> Agreement:
    """Return the agreement of ``ratings`` scores with ``human_feedback`` labels (any batches, joined by row id):
    what the dataset card reports over every published batch."""
    scores = {r.row_id: list(r.scores or []) for r in rated if r.ok}
    return judge_human_agreement(
        (scores[f.row_id], human_scores(f)) for f in labelled if f.ok and f.row_id in scores
    )


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _single_best(values: Sequence[float]) -> int | None:
    best = max(values)
    return values.index(best) if values.count(best) == 1 else None


def _tau_b(n: int, concordant: int, discordant: int, human_ties: int, judge: Sequence[float]) -> float | None:
    """Return Kendall's tau-b from the pair counts (None when one side has every pair tied)."""
    total = n * (n - 1) // 2
    judge_ties = sum(1 for a in range(n) for b in range(a + 1, n) if judge[a] == judge[b])
    denominator = ((total - judge_ties) * (total - human_ties)) ** 0.5
    return round((concordant - discordant) / denominator, 4) if denominator else None
