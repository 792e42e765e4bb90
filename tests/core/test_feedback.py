from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pref_assets.core.feedback import (
    HUMAN,
    JUDGE,
    NO_LABELS,
    NO_RESPONSE,
    NOT_CONFIGURED,
    NOT_IN_ARGILLA,
    STAGE,
    HumanLabels,
    ReviewCursor,
    aggregate_responses,
    batch_fingerprints,
    changed_batches,
    feedback_row,
    preference_row,
    preference_rows,
    unconfigured_row,
)
from pref_assets.core.pairs import ALL_TIED, SMALL_MARGIN
from pref_assets.core.rows import FeedbackRow, RatingRow, RecordRow

NEVER_PUSHED = "never pushed; materialize argilla_records with argilla.url set"
NONE = (None, None)
ZERO = (0, 0)
NO_PAIR = (None, None, None, None, None)


def _response(status: str = "submitted", **values: Any) -> dict[str, Any]:
    return {"status": status, "values": {k: {"value": v} for k, v in values.items()}}


def _ranked(*slots: int, ranks: list[int | None] | None = None) -> list[dict[str, Any]]:
    ranks = ranks or list(range(1, len(slots) + 1))
    return [{"value": f"response_{s + 1}", "rank": r} for s, r in zip(slots, ranks, strict=True)]


@pytest.mark.parametrize(
    ("responses", "ratings", "counts", "ranking", "n_ranked", "submitted"),
    [
        ([], NONE, ZERO, NONE, 0, 0),
        ([_response(rating_1=1, rating_2=5)], (1.0, 5.0), (1, 1), NONE, 0, 1),
        ([_response(rating_1=1, rating_2=5), _response(rating_1=3, rating_2=4)],
         (2.0, 4.5), (2, 2), NONE, 0, 2),
        ([_response(rating_1=4), _response(rating_1=2, rating_2=3)], (3.0, 3.0), (2, 1), NONE, 0, 2),
        ([_response("draft", rating_1=5, rating_2=1)], NONE, ZERO, NONE, 0, 0),
        ([_response("discarded"), _response(rating_1=2, rating_2=2)], (2.0, 2.0), (1, 1), NONE, 0, 1),
        ([{"status": "discarded", "values": None}], NONE, ZERO, NONE, 0, 0),
        ([_response(ranking=_ranked(1, 0))], NONE, ZERO, (2.0, 1.0), 1, 1),
        ([_response(ranking=_ranked(1, 0)), _response(ranking=_ranked(0, 1))], NONE, ZERO, (1.5, 1.5), 2, 2),
        ([_response(ranking=_ranked(1, 0, ranks=[None, None]))], NONE, ZERO, (2.0, 1.0), 1, 1),
        ([_response(ranking=_ranked(0, 1, ranks=[1, 1]))], NONE, ZERO, (1.0, 1.0), 1, 1),
        ([_response(ranking=[{"value": "response_9", "rank": 1}, {"value": "response_2", "rank": 2}])],
         NONE, ZERO, (None, 2.0), 1, 1),
        ([_response(ranking=[])], NONE, ZERO, NONE, 0, 1),
        ([_response(rating_1=True, rating_2="4")], NONE, ZERO, NONE, 0, 1),
    ],
)  # fmt: skip
def test_aggregate_responses(
    responses: list, ratings: tuple, counts: tuple, ranking: tuple, n_ranked: int, submitted: int
) -> None:
    labels = aggregate_responses(responses, 2)
    assert labels.ratings == ratings
    assert labels.rating_counts == counts
    assert labels.ranking == ranking
    assert labels.ranking_count == n_ranked
    assert labels.submitted == submitted


def test_comments_are_kept_trimmed_and_empty_ones_dropped() -> None:
    responses = [_response(comment="  harmful answer 2 "), _response(comment="   "), _response(rating_1=3)]
    assert aggregate_responses(responses, 2).comments == ("harmful answer 2",)


def _record_row(**extra: Any) -> RecordRow:
    base = {"prompt_id": "p1", "record_id": "r-stable", "pushed": True, "push_error": None,
            "status": "ok", "failed_stage": None, "reason": None}  # fmt: skip
    return RecordRow(**(base | extra))


def _record(*responses: dict[str, Any]) -> dict[str, Any]:
    return {"id": "r-server", "external_id": "p1", "responses": list(responses)}


@pytest.mark.parametrize(
    ("record_row", "record", "status", "stage", "reason"),
    [
        (_record_row(status="failed", failed_stage="ratings", reason="judge_unparseable"), None,
         "failed", "ratings", "judge_unparseable"),
        (_record_row(), None, "failed", STAGE, f"{NOT_IN_ARGILLA}: pushed, but not in the dataset now"),
        (_record_row(pushed=False, push_error="HTTP 422: bad metadata"), None,
         "failed", STAGE, f"{NOT_IN_ARGILLA}: HTTP 422: bad metadata"),
        (_record_row(pushed=False), None, "failed", STAGE, f"{NOT_IN_ARGILLA}: {NEVER_PUSHED}"),
        (_record_row(), _record(), "skipped", STAGE, NO_RESPONSE),
        (_record_row(), _record(_response("draft", rating_1=5, rating_2=1)), "skipped", STAGE, NO_RESPONSE),
        (_record_row(), _record(_response(comment="none is good")), "skipped", STAGE, NO_LABELS),
        (_record_row(), _record(_response(rating_1=1, rating_2=5)), "ok", None, None),
        (_record_row(), _record(_response(ranking=_ranked(1, 0))), "ok", None, None),
    ],
)  # fmt: skip
def test_feedback_row_status(record_row: RecordRow, record: dict | None, status: str, stage: str | None,
                             reason: str | None) -> None:  # fmt: skip
    row = feedback_row(record_row, record, 2)
    assert (row.status, row.failed_stage, row.reason) == (status, stage, reason)
    assert (row.prompt_id, row.record_id) == ("p1", "r-stable")


def test_feedback_row_carries_labels_and_the_argilla_id() -> None:
    row = feedback_row(_record_row(), _record(_response(rating_1=1, rating_2=5), _response(rating_1=2)), 2)
    assert row.argilla_record_id == "r-server"
    assert row.human_ratings == [1.5, 5.0] and row.rating_counts == [2, 1]
    assert row.submitted == 2 and row.human_ranking == [None, None] and row.ranking_count == 0


@pytest.mark.parametrize(
    ("record_row", "status", "reason_start"),
    [
        (_record_row(), "skipped", NOT_CONFIGURED),
        (_record_row(status="failed", failed_stage="grouped", reason="all_generations_failed"),
         "failed", "all_generations_failed"),
    ],
)  # fmt: skip
def test_unconfigured_row(record_row: RecordRow, status: str, reason_start: str) -> None:
    row = unconfigured_row(record_row)
    assert row.status == status and row.reason.startswith(reason_start)
    assert row.human_ratings is None and row.submitted == 0


def _rating_row(**extra: Any) -> RatingRow:
    base = {"prompt_id": "p1", "instruction": "Q?", "system_prompt": None, "messages": None,
            "generation_models": ["m1", "m2", "m3"], "generations": ["first", "second", "third"],
            "scores": [5.0, 3.0, 1.0], "status": "ok", "failed_stage": None, "reason": None}  # fmt: skip
    return RatingRow(**(base | extra))


def _labels(ratings: list | None = None, ranking: list | None = None, status: str = "ok") -> FeedbackRow:
    return FeedbackRow(prompt_id="p1", human_ratings=ratings or [None] * 3, human_ranking=ranking or [None] * 3,
                       status=status)  # fmt: skip


@pytest.mark.parametrize(
    ("rating_row", "labels", "kwargs", "expected"),
    [
        # no human labels: the judge decides
        (_rating_row(), None, {}, ("ok", JUDGE, "m1", "m3", 5.0, 1.0, 4.0)),
        (_rating_row(), _labels(status="skipped"), {}, ("ok", JUDGE, "m1", "m3", 5.0, 1.0, 4.0)),
        (_rating_row(status="failed", failed_stage="ratings", reason="judge_unparseable", scores=[None] * 3),
         None, {}, ("failed", JUDGE, *NO_PAIR)),
        # a failed row (a repeat of a labelled prompt) stays failed whatever labels reach it
        (_rating_row(status="failed", failed_stage="prompts", reason="duplicate", scores=[None] * 3),
         _labels([1.0, 2.0, 5.0]), {}, ("failed", JUDGE, *NO_PAIR)),
        # human ratings decide, overriding the judge
        (_rating_row(), _labels([1.0, 2.0, 5.0]), {}, ("ok", HUMAN, "m3", "m1", 5.0, 1.0, 4.0)),
        (_rating_row(), _labels([1.5, None, 4.0]), {}, ("ok", HUMAN, "m3", "m1", 4.0, 1.5, 2.5)),
        (_rating_row(), _labels([3.0, 3.0, 3.0]), {}, ("skipped", HUMAN, *NO_PAIR)),
        (_rating_row(), _labels([4.0, 3.0, 3.5]), {"min_margin": 2}, ("skipped", HUMAN, *NO_PAIR)),
        # ratings win over a ranking
        (_rating_row(), _labels([5.0, 1.0, 3.0], [3, 1, 2]), {}, ("ok", HUMAN, "m1", "m2", 5.0, 1.0, 4.0)),
        # a ranking alone decides: no ratings, the margin is the rank gap
        (_rating_row(), _labels(None, [3.0, 1.0, 2.0]), {}, ("ok", HUMAN, "m2", "m1", None, None, 2.0)),
        (_rating_row(), _labels(None, [1.5, 1.5, None]), {}, ("skipped", HUMAN, *NO_PAIR)),
        # a human rating of a slot with no answer text is not paired
        (_rating_row(generations=["first", None, "third"]), _labels([2.0, 5.0, 4.0]), {},
         ("ok", HUMAN, "m3", "m1", 4.0, 2.0, 2.0)),
    ],
)  # fmt: skip
def test_preference_row(rating_row: RatingRow, labels: FeedbackRow | None, kwargs: dict, expected: tuple) -> None:
    row = preference_row(rating_row, labels, **kwargs)
    got = (row.status, row.pair_source, row.chosen_model, row.rejected_model,
           row.chosen_rating, row.rejected_rating, row.margin)  # fmt: skip
    assert got == expected


@pytest.mark.parametrize(
    ("labels", "reason"),
    [(_labels([3.0, 3.0, 3.0]), ALL_TIED), (_labels([4.0, 3.0, 3.5]), SMALL_MARGIN)],
)
def test_human_no_pair_keeps_the_reason(labels: FeedbackRow, reason: str) -> None:
    row = preference_row(_rating_row(), labels, min_margin=2)
    assert (row.status, row.reason) == ("skipped", reason)


def test_human_pair_has_the_dpo_layout() -> None:
    row = preference_row(_rating_row(system_prompt="Be brief."), _labels([1.0, 2.0, 5.0]))
    assert row.prompt == "Q?"
    assert row.chosen[-1] == {"role": "assistant", "content": "third"}
    assert row.rejected[-1] == {"role": "assistant", "content": "first"}
    assert row.chosen[0] == {"role": "system", "content": "Be brief."}


def test_labels_join_by_row_id_so_a_repeated_prompt_takes_none() -> None:
    original = _rating_row(row_id="b#0")
    repeat = _rating_row(row_id="b#1", status="failed", failed_stage="prompts", reason="duplicate", scores=[None] * 3)
    labels = [
        replace(_labels([1.0, 2.0, 5.0]), row_id="b#0"),
        FeedbackRow(row_id="b#1", prompt_id="p1", status="failed", failed_stage="prompts", reason="duplicate"),
    ]
    first, second = preference_rows([original, repeat], labels)
    assert (first.row_id, first.pair_source, first.chosen_model) == ("b#0", HUMAN, "m3")
    assert (second.row_id, second.pair_source, second.status, second.reason) == ("b#1", JUDGE, "failed", "duplicate")


def test_labels_join_by_prompt_id_when_a_row_lacks_a_row_id() -> None:
    [row] = preference_rows([_rating_row()], [_labels([1.0, 2.0, 5.0])], min_margin=2)
    assert (row.pair_source, row.chosen_model, row.rejected_model, row.margin) == (HUMAN, "m3", "m1", 4.0)
    [row] = preference_rows([_rating_row(row_id="b#0")], [replace(_labels([1.0, 2.0, 5.0]), row_id="b#1")])
    assert row.pair_source == JUDGE


def test_labels_without_ratings_or_ranking_have_no_labels() -> None:
    assert not HumanLabels((None,), (0,), (None,), 0, 1, ("only a comment",)).has_labels()
    assert HumanLabels((None,), (0,), (2.0,), 1, 1, ()).has_labels()


def _tracked(rid: str, batch: str | None, *responses: tuple[str, str, str]) -> dict[str, Any]:
    return {"id": rid, "metadata": {"batch": batch} if batch else {},
            "responses": [{"id": i, "status": s, "updated_at": t} for i, s, t in responses]}  # fmt: skip


@pytest.mark.parametrize(
    ("records", "batches"),
    [
        ([], set()),
        ([_tracked("r1", "batch-00000", ("a", "draft", "t1"))], set()),
        ([_tracked("r1", None, ("a", "submitted", "t1"))], set()),
        ([_tracked("r1", "batch-00000", ("a", "submitted", "t1")),
          _tracked("r2", "batch-00003", ("b", "submitted", "t1"), ("c", "discarded", "t2"))],
         {"batch-00000", "batch-00003"}),
    ],
)  # fmt: skip
def test_batch_fingerprints_cover_batches_with_submitted_responses(records: list, batches: set) -> None:
    assert set(batch_fingerprints(records)) == batches


def test_fingerprint_moves_with_an_edit_and_ignores_order() -> None:
    one = _tracked("r1", "b", ("a", "submitted", "t1"))
    two = _tracked("r2", "b", ("b", "submitted", "t1"))
    edited = _tracked("r1", "b", ("a", "submitted", "t2"))
    assert batch_fingerprints([one, two]) == batch_fingerprints([two, one])
    assert batch_fingerprints([one, two]) != batch_fingerprints([edited, two])


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        ({}, {}, []),
        ({}, {"b1": "x"}, ["b1"]),
        ({"b1": "x"}, {"b1": "x"}, []),
        ({"b1": "x", "b2": "y"}, {"b1": "x", "b2": "z"}, ["b2"]),
        ({"b1": "x", "b2": "y"}, {"b1": "x"}, ["b2"]),
        ({"b2": "y"}, {"b1": "x", "b2": "y"}, ["b1"]),
    ],
)
def test_changed_batches(before: dict, after: dict, changed: list) -> None:
    assert changed_batches(before, after) == changed


@pytest.mark.parametrize("text", [None, ""])
def test_empty_cursor(text: str | None) -> None:
    assert ReviewCursor.decode(text) == ReviewCursor()


def test_cursor_round_trip() -> None:
    cursor = ReviewCursor("2026-01-01T00:00:00", {"batch-00000": "abc"})
    assert ReviewCursor.decode(cursor.encode()) == cursor
