from __future__ import annotations

import json
from typing import Any

from pref_assets.core.ids import record_uuid
from pref_assets.core.records import build_record, dataset_spec, record_rows
from pref_assets.core.rows import RatingRow


def _row(**extra: Any) -> RatingRow:
    base = {
        "prompt_id": "abc",
        "instruction": "Q?",
        "topic": "math",
        "generation_models": ["m1", "m2", "m3"],
        "generations": ["A", None, "C"],
        "scores": [4.0, None, 1.5],
        "judge_model": "org/judge-70b",
    }
    return RatingRow(**(base | extra))


def test_record_has_stable_ids_fields_and_suggestions() -> None:
    record = build_record(_row(), dataset="ds", batch="batch-00000")
    assert record["id"] == record_uuid("ds", "abc")
    assert record["external_id"] == "abc"
    assert record["fields"] == {"instruction": "Q?", "response_1": "A", "response_3": "C"}
    ratings = {s["question_name"]: s["value"] for s in record["suggestions"] if s["question_name"] != "ranking"}
    assert ratings == {"rating_1": 4, "rating_3": 2}
    assert all(s["agent"] == "org/judge-70b" and s["type"] == "model" for s in record["suggestions"])
    assert record["metadata"] == {
        "topic": "math",
        "batch": "batch-00000",
        "models": "m1,m2,m3",
        "judge_rating_1": 4.0,
        "judge_rating_3": 1.5,
        "judge_margin": 2.5,
    }


def test_ranking_suggestion_orders_rated_answers_and_shares_ranks_on_ties() -> None:
    record = build_record(_row(generations=["A", "B", "C"], scores=[3.0, 5.0, 3.0]), dataset="d", batch="b")
    [ranking] = [s for s in record["suggestions"] if s["question_name"] == "ranking"]
    assert ranking["value"] == [
        {"value": "response_2", "rank": 1},
        {"value": "response_1", "rank": 2},
        {"value": "response_3", "rank": 2},
    ]


def test_record_of_another_dataset_gets_another_id() -> None:
    assert build_record(_row(), dataset="a", batch="b")["id"] != build_record(_row(), dataset="c", batch="b")["id"]


def test_dataset_spec_matches_record_names() -> None:
    spec = dataset_spec(3)
    record = build_record(_row(), dataset="d", batch="b")
    field_names = {f["name"] for f in spec["fields"]}
    question_names = {q["name"] for q in spec["questions"]}
    metadata_names = {m["name"] for m in spec["metadata_properties"]}
    assert set(record["fields"]) <= field_names
    assert {s["question_name"] for s in record["suggestions"]} <= question_names
    assert set(record["metadata"]) <= metadata_names
    assert {"ranking", "comment"} <= question_names


def test_record_rows_hold_the_record_of_an_ok_row_and_carry_a_failed_one() -> None:
    failed = _row(prompt_id="dup", row_id="b#1", status="failed", failed_stage="prompts", reason="duplicate")
    ok, carried = record_rows([_row(row_id="b#0"), failed], dataset="ds", batch="b")
    assert (ok.row_id, ok.prompt_id, ok.record_id, ok.pushed, ok.push_error) == ("b#0", "abc", record_uuid("ds", "abc"),
                                                                                  False, None)  # fmt: skip
    assert json.loads(ok.record) == build_record(_row(), dataset="ds", batch="b")
    assert (ok.status, ok.failed_stage, ok.reason) == ("ok", None, None)
    assert (carried.row_id, carried.record_id, carried.record, carried.pushed) == ("b#1", None, None, False)
    assert (carried.status, carried.failed_stage, carried.reason) == ("failed", "prompts", "duplicate")


def test_every_candidate_is_an_answer_of_the_record_and_the_panel_is_the_agent() -> None:
    row = _row(generation_models=["m1", "m1", "m2", "m2"], generations=["A", "B", "C", "D"],
               scores=[4.0, 2.0, 5.0, 3.5], judge_model="j1 + j2")  # fmt: skip
    record = build_record(row, dataset="ds", batch="batch-00000")
    assert list(record["fields"]) == ["instruction", "response_1", "response_2", "response_3", "response_4"]
    assert record["metadata"]["models"] == "m1,m1,m2,m2"
    assert {s["agent"] for s in record["suggestions"]} == {"j1 + j2"}
    assert [q["name"] for q in dataset_spec(4)["questions"]][:4] == ["rating_1", "rating_2", "rating_3", "rating_4"]
