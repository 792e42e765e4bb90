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
