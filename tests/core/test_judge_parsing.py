from __future__ import annotations

import json

import pytest

from pref_assets.core.judge import (
    JudgeParseError,
    judge_messages,
    judge_schema,
    parse_verdicts,
    presentation_order,
)
from pref_assets.core.rubric import ASPECTS, HELPFULNESS, HONESTY, OVERALL, RUBRIC_VERSION

GOOD_JSON = '{"answer_1": {"rationale": "Correct.", "rating": 5}, "answer_2": {"rationale": "Wrong.", "rating": 2}}'


@pytest.mark.parametrize(
    ("text", "ratings"),
    [
        (GOOD_JSON, [5, 2]),
        ("Here is my evaluation:\n```json\n" + GOOD_JSON + "\n```", [5, 2]),
        (
            '{"answer_2": {"rationale": "x", "rating": 1}, "answer_1": {"rationale": "y", "rating": 4}}',
            [4, 1],
        ),
        (
            '{"answer_1": {"rationale": "a\nb", "rating": "4"}, "answer_2": {"rationale": "c", "rating": "3/5"}}',
            [4, 3],
        ),
        (
            '{"answer_1": {"rationale": "a", "rating": 4.0}, "answer_2": {"rationale": "c", "rating": "five"}}',
            [4, 5],
        ),
        ('{"ratings": [{"rationale": "a", "rating": 1}, {"rationale": "b", "rating": 3}]}', [1, 3]),
        (
            "#### Output for Text 1\nRating: 4\nRationale: fine.\n#### Output for Text 2\nRating: 2\nRationale: bad.",
            [4, 2],
        ),
        (
            "**Answer 1**\r\n**Rating:** 3\r\nRationale: ok\r\n\r\n**Answer 2**\r\n**Rating:** 5/5\r\nRationale: great",
            [3, 5],
        ),
        ("Sure! Let me rate them.\n\nAnswer 1\nRating: four\nAnswer 2\nScore: 1 out of 5", [4, 1]),
        ("Answer 1\nRating: 4 - good\nAnswer 2\nRating: 2 (weak)", [4, 2]),
        ('{"answer_1": "4", "answer_2": 3}', [4, 3]),
        ('{"Answer 1": {"Rationale": "a", "Rating": 2}, "Answer 2": {"RATING": 5}}', [2, 5]),
        ('{"1": {"rating": 3}, "2": {"score": 1}}', [3, 1]),
        ('{"text_1": {"rating": 3}, "text_2": {"rating": 1}}', [3, 1]),
        ('{"ratings": {"answer_1": {"rating": 2}, "answer_2": {"rating": 4}}}', [2, 4]),
        ('[{"rationale": "a", "rating": 1}, {"rationale": "b", "rating": 3}]', [1, 3]),
        ('<think>The format is {"answer_1": {...}}. Answer 1 looks fine.</think>\n' + GOOD_JSON, [5, 2]),
        (GOOD_JSON + "\nNote: I used the {answer_n} keys.", [5, 2]),
        ('Draft: {"answer_1": {"rating": 1}}\nCorrection:\n' + GOOD_JSON, [5, 2]),
        ("Answer 1: 4\nAnswer 2: 2", [4, 2]),
        ("Answer 1 - Rating: 4\nAnswer 2 - Rating: 1/5", [4, 1]),
        ("Answer 1\nRationale: Answer 2 in every way is worse.\nRating: 5\nAnswer 2\nRating: 3", [5, 3]),
        ("<think>\nAnswer 1 looks fine, answer 2 not.</think>\nAnswer 1\nRating: 4\nAnswer 2\nRating: 2", [4, 2]),
    ],
)
def test_readable_judge_answers(text: str, ratings: list[int]) -> None:
    assert [v.rating for v in parse_verdicts(text, 2, OVERALL)] == ratings


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot rate these answers.", "expected answer blocks 1..2, found none"),
        ('{"answer_1": {"rationale": "a", "rating": 4}}', "expected keys"),
        (
            '{"answer_1": {"rating": 4}, "answer_2": {"rating": 3}, "answer_3": {"rating": 1}}',
            "expected keys",
        ),
        (
            '{"answer_1": {"rationale": "a", "rating": 7}, "answer_2": {"rationale": "b", "rating": 3}}',
            "rating 7",
        ),
        (
            '{"answer_1": {"rationale": "a", "rating": 0}, "answer_2": {"rationale": "b", "rating": 3}}',
            "rating 0",
        ),
        (
            '{"answer_1": {"rationale": "a", "rating": "N/A"}, "answer_2": {"rating": 3}}',
            "N/A is not allowed",
        ),
        ('{"answer_1": {"rationale": "a", "rating": true}, "answer_2": {"rating": 3}}', "not a number"),
        ('{"answer_1": {"rationale": "a", "rating": 3.5}, "answer_2": {"rating": 3}}', "rating 3.5"),
        ('{"answer_1": {"rationale": "a", "rating": "great"}, "answer_2": {"rating": 3}}', "not a number"),
        ('{"answer_1": ["4"], "answer_2": "3"}', "rating ['4']"),
        ('{"answer_1": {"rationale": "a"}, "answer_2": {"rating": 3}}', "answer 1: no rating"),
        ("Answer 1\nRating: 2 out of 10\nAnswer 2\nRating: 5 out of 10", "another scale"),
        ("Answer 1\nRating: 4/10\nAnswer 2\nRating: 3/10", "another scale"),
        ("Answer 1\nRating: 3/4\nAnswer 2\nRating: 3", "another scale"),
        ("Answer 1\nRating: 3-4\nAnswer 2\nRating: 3", "a range"),
        ("Answer 1\nRating: fourteen\nAnswer 2\nRating: 3", "not a number"),
        ('{"answer_1": {"rating": 4}, "answer_1 ": {"rating": 3}}', "expected keys"),
        ('["answer_1", 4]', "expected answer blocks"),
        ('{"answer_1": {"rationale": "cut off', "expected answer blocks"),
        ("Answer 1\nRating: 4\nAnswer 2\nRationale: no rating given", "expected one rating, found 0"),
        ("Answer 1\nRating: 4\nAnswer 3\nRating: 2", "found [1, 3]"),
        ('{"ratings": [{"rating": 1}]}', "expected 2 ratings, found 1"),
    ],
)
def test_unreadable_judge_answers_fail_with_reason(text: str, detail: str) -> None:
    with pytest.raises(JudgeParseError) as info:
        parse_verdicts(text, 2, OVERALL)
    assert info.value.reason == "judge_unparseable"
    assert detail in info.value.detail


def test_labelled_verdicts_are_placed_by_their_label_not_their_position() -> None:
    text = json.dumps(
        {
            "ratings": [
                {"answer": 2, "rationale": "5 is wrong", "rating": 1},
                {"answer_id": "answer_1", "rationale": "correct", "rating": 5},
            ]
        }
    )
    verdicts = parse_verdicts(text, 2, OVERALL)
    assert [(v.rating, v.rationale) for v in verdicts] == [(5, "correct"), (1, "5 is wrong")]


@pytest.mark.parametrize(
    "labels",
    [(1, 1), (1, None), (2, 3)],
    ids=["twice", "one unlabelled", "out of range"],
)
def test_verdict_labels_must_name_every_answer_once(labels: tuple[int | None, int | None]) -> None:
    items = [{"rating": 3} | ({} if label is None else {"answer": label}) for label in labels]
    with pytest.raises(JudgeParseError, match=r"labelled answer 1\.\.2 once each"):
        parse_verdicts(json.dumps({"ratings": items}), 2, OVERALL)


def test_plain_text_rationale_stops_at_the_rating_line() -> None:
    text = "Answer 1\nRationale: clear and correct\nRating: 4\nAnswer 2\nRationale: vague\n\nScore: 2"
    assert [(v.rating, v.rationale) for v in parse_verdicts(text, 2, OVERALL)] == [
        (4, "clear and correct"),
        (2, "vague"),
    ]


def test_honesty_allows_na_as_no_rating() -> None:
    text = '{"answer_1": {"rationale": "creative", "rating": "N/A"}, "answer_2": {"rationale": "b", "rating": 4}}'
    assert [v.rating for v in parse_verdicts(text, 2, HONESTY)] == [None, 4]


def test_error_kind_is_read_and_checked() -> None:
    ok = json.dumps(
        {
            "answer_1": {"rationale": "a", "error_kind": "incorrect", "rating": 2},
            "answer_2": {"rationale": "b", "error_kind": "none", "rating": 5},
        }
    )
    assert [v.error_kind for v in parse_verdicts(ok, 2, HELPFULNESS)] == ["incorrect", "none"]
    spelled = ok.replace('"incorrect"', '"Incorrect"').replace('"none"', '"None"')
    assert [v.error_kind for v in parse_verdicts(spelled, 2, HELPFULNESS)] == ["incorrect", "none"]
    with pytest.raises(JudgeParseError, match="unknown error kind"):
        parse_verdicts(ok.replace('"incorrect"', '"vibes"'), 2, HELPFULNESS)


@pytest.mark.parametrize("aspect", list(ASPECTS.values()), ids=list(ASPECTS))
def test_schema_admits_exactly_one_verdict_per_answer(aspect) -> None:
    schema = judge_schema(3, aspect)
    assert schema["required"] == ["answer_1", "answer_2", "answer_3"]
    item = schema["properties"]["answer_1"]
    assert item["properties"]["rating"]["enum"] == list(aspect.allowed)
    assert ("error_kind" in item["required"]) == bool(aspect.error_kinds)


@pytest.mark.parametrize("aspect", list(ASPECTS.values()), ids=list(ASPECTS))
def test_judge_prompt_shows_every_answer_and_the_keys(aspect) -> None:
    system, user = judge_messages("Explain tides.", ["first answer", "second answer"], aspect)
    assert system["role"] == "system" and user["role"] == "user"
    for needle in (
        "Explain tides.",
        "## Answer 1\nfirst answer",
        "## Answer 2\nsecond answer",
        '"answer_2"',
        aspect.name,
    ):
        assert needle in user["content"]
    assert ('"N/A"' in user["content"]) == aspect.allows_na


def test_presentation_order_is_a_seeded_permutation() -> None:
    orders = {tuple(presentation_order(f"prompt-{i}", 3)) for i in range(50)}
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len(orders) > 1
    assert presentation_order("p", 4) == presentation_order("p", 4)


def test_rubric_version_is_a_hash() -> None:
    assert len(RUBRIC_VERSION) == 16 and int(RUBRIC_VERSION, 16) >= 0


def test_schema_round_trips_through_json() -> None:
    assert (
        json.loads(json.dumps(judge_schema(2, HONESTY)))["properties"]["answer_2"]["properties"]["rating"]["enum"][-1]
        == "N/A"
    )
