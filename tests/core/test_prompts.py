from __future__ import annotations

from typing import Any

import pytest

from pref_assets.core.ids import prompt_id
from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns, normalize_rows


def _rows(*values: dict[str, Any]) -> list[RawRow]:
    return [RawRow(f"f.jsonl:{i + 1}", v) for i, v in enumerate(values)]


def test_ok_row_gets_id_topic_and_source() -> None:
    [row] = normalize_rows(_rows({"instruction": "What's 2+2?", "topic": " math "}), {}, max_chars=100)
    assert row["status"] == "ok"
    assert row["prompt_id"] == prompt_id("What's 2+2?")
    assert row["topic"] == "math"
    assert row["source_ref"] == "f.jsonl:1"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"instruction": ""}, "empty_instruction"),
        ({"instruction": " \n\t "}, "empty_instruction"),
        ({"topic": "x"}, "missing_instruction"),
        ({"instruction": None}, "missing_instruction"),
        ({"instruction": 42}, "invalid_instruction"),
        ({"instruction": "x" * 101}, "instruction_too_long"),
        ({"messages": []}, "invalid_messages"),
        ({"messages": [{"role": "system", "content": "be brief"}]}, "invalid_messages: no user turn"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "invalid_messages: ends with an assistant turn",
        ),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "invalid_messages"),
        ({"messages": "[not json"}, "invalid_messages: not valid JSON"),
        ({"messages": ["hi"]}, "invalid_messages: item 0 is not an object"),
    ],
)
def test_bad_rows_fail_with_a_reason(values: dict[str, Any], reason: str) -> None:
    [row] = normalize_rows(_rows(values), {}, max_chars=100)
    assert row["status"] == "failed"
    assert row["failed_stage"] == "prompts"
    assert row["reason"].startswith(reason)
    assert row["source_ref"] == "f.jsonl:1"


def test_duplicates_are_kept_and_marked() -> None:
    rows = normalize_rows(_rows({"instruction": "a"}, {"instruction": "b"}, {"instruction": "a"}), {}, max_chars=9)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert rows[2]["reason"] == "duplicate: same prompt as f.jsonl:1"


def test_same_first_question_in_different_conversations_is_no_duplicate() -> None:
    rows = normalize_rows(
        _rows(
            {"instruction": "hi", "system_prompt": "Talk like a pirate."},
            {"instruction": "hi", "system_prompt": "Be formal."},
            {"instruction": "hi"},
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Why?"},
                ]
            },
            {"messages": [{"role": "user", "content": "hi"}]},
        ),
        {},
        max_chars=99,
    )
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "ok", "failed"]
    assert len({r["prompt_id"] for r in rows}) == 4
    assert rows[2]["prompt_id"] == prompt_id("hi")
    assert rows[4]["reason"] == "duplicate: same prompt as f.jsonl:3"


def test_prompts_that_differ_only_in_spacing_are_duplicates() -> None:
    texts = ["Hello there", "Hello there ", " Hello  there", "Hello there\n", "Hello, there"]
    rows = normalize_rows(_rows(*({"instruction": t} for t in texts)), {}, max_chars=99)
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "failed", "ok"]
    assert rows[2]["reason"] == "duplicate: same prompt as f.jsonl:1"
    assert rows[0]["instruction"] == "Hello there" and rows[1]["instruction"] == "Hello there "


def test_developer_turns_and_text_parts_are_read() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Name "}, {"type": "text", "text": "a prime."}]},
    ]
    [row] = normalize_rows(_rows({"messages": messages}), {}, max_chars=100)
    assert row["status"] == "ok" and row["instruction"] == "Name a prime."
    assert row["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a prime."}]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    [row] = normalize_rows(_rows({"messages": image}), {}, max_chars=100)
    assert row["status"] == "failed" and row["reason"].startswith("invalid_messages: item 0")


def test_chat_rows_take_first_user_turn_as_instruction() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another?"},
    ]
    [row] = normalize_rows(_rows({"messages": messages}), {}, max_chars=100)
    assert row["status"] == "ok"
    assert row["instruction"] == "Name a prime."
    assert row["prompt_id"] not in (prompt_id("Name a prime."), prompt_id("Another?"))
    assert row["messages"] == messages


def test_messages_given_as_json_text_are_parsed() -> None:
    [row] = normalize_rows(_rows({"messages": '[{"role": "user", "content": "Hi"}]'}), {}, max_chars=100)
    assert row["messages"] == [{"role": "user", "content": "Hi"}]


def test_column_mapping() -> None:
    mapping = {"instruction": "prompt", "topic": "category", "system_prompt": "sys"}
    [row] = normalize_rows(_rows({"prompt": "Q", "category": "c", "sys": "S"}), mapping, max_chars=100)
    assert (row["instruction"], row["topic"], row["system_prompt"]) == ("Q", "c", "S")


def test_check_columns_names_file_and_columns() -> None:
    with pytest.raises(PromptSourceError, match=r"data.csv: no column 'instruction'.*\['question'\]"):
        check_columns(["question"], {}, "data.csv")
    check_columns(["question"], {"instruction": "question"}, "data.csv")
