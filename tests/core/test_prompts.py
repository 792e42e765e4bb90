from __future__ import annotations

from typing import Any

import pytest

from pref_assets.core.ids import prompt_id
from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns, normalize_rows


def _rows(*values: dict[str, Any]) -> list[RawRow]:
    return [RawRow(f"f.jsonl:{i + 1}", v) for i, v in enumerate(values)]


def test_ok_row_gets_id_topic_and_source() -> None:
    [row] = normalize_rows(_rows({"instruction": "What's 2+2?", "topic": " math "}), {}, max_chars=100)
    assert row.status == "ok"
    assert row.prompt_id == prompt_id("What's 2+2?")
    assert row.topic == "math"
    assert row.source_ref == "f.jsonl:1"


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
    assert row.status == "failed"
    assert row.failed_stage == "prompts"
    assert row.reason.startswith(reason)
    assert row.source_ref == "f.jsonl:1"


def test_duplicates_are_kept_and_marked() -> None:
    rows = normalize_rows(_rows({"instruction": "a"}, {"instruction": "b"}, {"instruction": "a"}), {}, max_chars=9)
    assert [r.status for r in rows] == ["ok", "ok", "failed"]
    assert rows[2].reason == "duplicate: same prompt as f.jsonl:1"


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
    assert [r.status for r in rows] == ["ok", "ok", "ok", "ok", "failed"]
    assert len({r.prompt_id for r in rows}) == 4
    assert rows[2].prompt_id == prompt_id("hi")
    assert rows[4].reason == "duplicate: same prompt as f.jsonl:3"


def test_prompts_that_differ_only_in_spacing_are_duplicates() -> None:
    texts = ["Hello there", "Hello there ", " Hello  there", "Hello there\n", "Hello, there"]
    rows = normalize_rows(_rows(*({"instruction": t} for t in texts)), {}, max_chars=99)
    assert [r.status for r in rows] == ["ok", "failed", "failed", "failed", "ok"]
    assert rows[2].reason == "duplicate: same prompt as f.jsonl:1"
    assert rows[0].instruction == "Hello there" and rows[1].instruction == "Hello there "


def test_developer_turns_and_text_parts_are_read() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Name "}, {"type": "text", "text": "a prime."}]},
    ]
    [row] = normalize_rows(_rows({"messages": messages}), {}, max_chars=100)
    assert row.status == "ok" and row.instruction == "Name a prime."
    assert row.messages == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a prime."}]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    [row] = normalize_rows(_rows({"messages": image}), {}, max_chars=100)
    assert row.status == "failed" and row.reason.startswith("invalid_messages: item 0")


def test_chat_rows_take_first_user_turn_as_instruction() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another?"},
    ]
    [row] = normalize_rows(_rows({"messages": messages}), {}, max_chars=100)
    assert row.status == "ok"
    assert row.instruction == "Name a prime."
    assert row.prompt_id not in (prompt_id("Name a prime."), prompt_id("Another?"))
    assert row.messages == messages


def test_messages_given_as_json_text_are_parsed() -> None:
    [row] = normalize_rows(_rows({"messages": '[{"role": "user", "content": "Hi"}]'}), {}, max_chars=100)
    assert row.messages == [{"role": "user", "content": "Hi"}]


def test_column_mapping() -> None:
    mapping = {"instruction": "prompt", "topic": "category", "system_prompt": "sys"}
    [row] = normalize_rows(_rows({"prompt": "Q", "category": "c", "sys": "S"}), mapping, max_chars=100)
    assert (row.instruction, row.topic, row.system_prompt) == ("Q", "c", "S")


def test_check_columns_names_file_and_columns() -> None:
    with pytest.raises(PromptSourceError, match=r"data.csv: no column 'instruction'.*\['question'\]"):
        check_columns(["question"], {}, "data.csv")
    check_columns(["question"], {"instruction": "question"}, "data.csv")


def test_chat_messages_nested_too_deeply_are_a_failed_row() -> None:
    [row] = normalize_rows(_rows({"messages": "[" * 5_000 + "]" * 5_000}), {}, max_chars=100)
    assert (row.status, row.reason) == ("failed", "invalid_messages: JSON nested deeper than 32 levels")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"instruction": "hello\x00world"}, "U+0000 (NUL) in the instruction at character 6"),
        ({"instruction": "\x1b[31mred"}, "U+001B (a control character) in the instruction at character 1"),
        ({"instruction": "page\x0cbreak"}, "U+000C (a control character) in the instruction at character 5"),
        (
            {"instruction": "ok", "system_prompt": "be\x07brief"},
            "U+0007 (a control character) in the system prompt at character 3",
        ),
        (
            {"messages": [{"role": "system", "content": "x\x00"}, {"role": "user", "content": "a"}]},
            "U+0000 (NUL) in message 1 at character 2",
        ),
    ],
)
def test_control_characters_fail_the_row_naming_file_and_line(values: dict[str, Any], reason: str) -> None:
    [row] = normalize_rows(_rows(values), {}, max_chars=100)
    assert (row.status, row.failed_stage) == ("failed", "prompts")
    assert row.reason == f"control_character: {reason} of f.jsonl:1; remove it from the source"


def test_tabs_and_line_breaks_are_no_control_characters() -> None:
    [row] = normalize_rows(_rows({"instruction": "a\tb\r\nc\n"}), {}, max_chars=100)
    assert row.status == "ok"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Caf\u00e9 au lait?", "Cafe\u0301 au lait?"),  # NFC and NFD
        ("Hello there", "Hel\u200blo there"),  # zero-width space
        ("Hello there", "Hello\u200c there"),  # zero-width non-joiner
        ("Hello there", "\u200dHello there"),  # zero-width joiner
        ("Hello there", "Hello there\u2060"),  # word joiner
        ("Hello there", "\ufeffHello there"),  # byte order mark
        ("Hello there", "HELLO THERE"),  # case
        ("Stra\u00dfe?", "STRASSE?"),  # case folding, not only lower()
        ("Hello there", "\uff28\uff45\uff4c\uff4c\uff4f there"),  # full-width letters (NFKC)
    ],
)
def test_prompts_alike_after_normalization_are_duplicates_sent_as_written(first: str, second: str) -> None:
    rows = normalize_rows(_rows({"instruction": first}, {"instruction": second}), {}, max_chars=99)
    assert [r.status for r in rows] == ["ok", "failed"]
    assert rows[1].reason == "duplicate: same prompt as f.jsonl:1"
    assert [r.instruction for r in rows] == [first, second]
    assert [r.prompt_id for r in rows] == [prompt_id(first), prompt_id(second)]


def test_normalization_keeps_different_prompts_apart() -> None:
    texts = ["Hello there", "Hello, there", "Hellothere", "resume", "r\u00e9sum\u00e9", "\u2460", "1", "hello THERE"]
    rows = normalize_rows(_rows(*({"instruction": t} for t in texts)), {}, max_chars=99)
    assert [r.status for r in rows] == ["ok", "ok", "ok", "ok", "ok", "ok", "failed", "failed"]
    assert [r.duplicate_of for r in rows[-2:]] == ["5", "0"]


def test_row_ids_are_unique_and_a_duplicate_names_its_original() -> None:
    values = [{"instruction": "a"}, {"topic": "none"}, {"instruction": "a"}, {"topic": "none"}, {"instruction": "A"}]
    rows = normalize_rows(_rows(*values), {}, max_chars=9, row_key=lambda i: f"batch-00003#{i}")
    assert [r.row_id for r in rows] == [f"batch-00003#{i}" for i in range(5)]
    assert [r.duplicate_of for r in rows] == [None, None, "batch-00003#0", None, "batch-00003#0"]
    assert [r.prompt_id for r in rows].count(prompt_id("a")) == 2  # the id stays the hash of the text
