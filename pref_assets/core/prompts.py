"""Turn raw source rows into validated prompt rows; bad rows are kept, marked with a reason.

Every row gets a ``row_id`` unique in its batch and across batches (see ``pref_assets.core.ids.row_id``); a
repeat of an earlier prompt is a failed row whose ``duplicate_of`` is the first one's ``row_id``. Prompts are
compared for repeats in a normalized form (``duplicate_form``) and sent as written.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pref_assets.core import status
from pref_assets.core.conversation import prompt_messages
from pref_assets.core.ids import prompt_id
from pref_assets.core.limits import json_too_deep_at, too_deep
from pref_assets.core.rows import Message, PromptRow, failed
from pref_assets.core.text import describe_columns

FIELDS = ("instruction", "topic", "system_prompt", "messages")
DUPLICATE = "duplicate"
CONTROL_CHARACTER = "control_character"
# C0 control characters other than tab, line feed and carriage return: never sent to a model.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Invisible characters that make equal text compare unequal: zero-width space, (non-)joiner, word joiner, BOM.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_ROLES = {"system", "user", "assistant"}
_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system turn


class PromptSourceError(ValueError):
    """A prompt source cannot be read at all (missing file, column, malformed line)."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as read from a source, with where it came from (``file:row``)."""

    source_ref: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Original:
    """The first occurrence of a prompt: the ``row_id`` and ``source_ref`` a later repeat names."""

    row_id: str
    source_ref: str


def check_columns(columns: Iterable[str], mapping: Mapping[str, str], where: str) -> None:
    """Raise if neither the instruction nor the messages column the mapping names is present."""
    present = set(columns)
    wanted = [mapping.get("instruction", "instruction"), mapping.get("messages", "messages")]
    if not any(name in present for name in wanted):
        raise PromptSourceError(
            f"{where}: no column {wanted[0]!r} (or {wanted[1]!r} for chat prompts); "
            f"{describe_columns(present)}; map yours with source.columns, e.g. "
            f"{{instruction: <your column>}}"
        )


def normalize_rows(
    rows: Iterable[RawRow],
    mapping: Mapping[str, str],
    *,
    max_chars: int,
    row_key: Callable[[int], str] = str,
    originals: Mapping[str, Original] | None = None,
) -> list[PromptRow]:
    """Return one prompt row per raw row: ok, or failed with a reason. Nothing is dropped.

    ``row_key(i)`` gives the ``row_id`` of the i-th row (0-based) of ``rows``. ``originals`` holds the first
    occurrences that came before ``rows`` (earlier batches), by ``duplicate_key``: a row alike one of them is a
    duplicate of it, so repeats are found across batches read one at a time.
    """
    seen: dict[str, Original] = dict(originals or {})
    out: list[PromptRow] = []
    for index, raw in enumerate(rows):
        row = _normalize(raw, mapping, max_chars, row_key(index))
        if row.ok:
            original = seen.setdefault(_duplicate_key(row), Original(row.row_id, row.source_ref))
            if original.row_id != row.row_id:
                reason = f"{DUPLICATE}: same prompt as {original.source_ref}"
                row = replace(row, duplicate_of=original.row_id, **status.failure(status.STAGE_PROMPTS, reason))
        out.append(row)
    return out


def first_occurrences(
    rows: Iterable[RawRow], mapping: Mapping[str, str], *, max_chars: int, row_key: Callable[[int], str] = str
) -> dict[str, Original]:
    """Return the first ok row of each ``duplicate_key`` among ``rows``: the originals later rows repeat."""
    found: dict[str, Original] = {}
    for index, raw in enumerate(rows):
        row = _normalize(raw, mapping, max_chars, row_key(index))
        if row.ok:
            found.setdefault(_duplicate_key(row), Original(row.row_id, row.source_ref))
    return found


def duplicate_key(values: Mapping[str, Any], mapping: Mapping[str, str], *, max_chars: int) -> str | None:
    """Return the key a source row's prompt is compared by for repeats, or None when the row fails (an empty,
    too long or unreadable prompt is no original)."""
    row = _normalize(RawRow("", values), mapping, max_chars, "")
    return _duplicate_key(row) if row.ok else None


def duplicate_form(text: str) -> str:
    """Return ``text`` as compared for repeats: compatibility forms and case folded (NFKC, casefold), zero-width
    characters removed, runs of whitespace made single spaces, ends trimmed. Prompts alike in this form would be
    answered (and paid for) alike."""
    text = unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH))
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())


def _duplicate_key(row: PromptRow) -> str:
    messages = [
        {"role": m["role"], "content": duplicate_form(m["content"])}
        for m in prompt_messages(row.instruction, row.system_prompt, row.messages)
    ]
    return prompt_id(duplicate_form(row.instruction or ""), messages)


def _normalize(raw: RawRow, mapping: Mapping[str, str], max_chars: int, row_id: str) -> PromptRow:
    values = {name: raw.values.get(mapping.get(name, name)) for name in FIELDS}
    system_prompt = _optional_text(values["system_prompt"])
    instruction, messages, problem = _read_turns(values)
    turns = None if instruction is None else prompt_messages(instruction, system_prompt, messages)
    row = PromptRow(
        row_id=row_id,
        prompt_id=None if instruction is None else prompt_id(instruction, turns),
        instruction=instruction,
        topic=_optional_text(values["topic"]),
        system_prompt=system_prompt,
        messages=messages,
        source_ref=raw.source_ref,
    )
    problem = problem or _text_problem(row, max_chars)
    return failed(row, status.STAGE_PROMPTS, problem) if problem else row


def _read_turns(values: Mapping[str, Any]) -> tuple[str | None, list[Message] | None, str | None]:
    """Return the instruction and the conversation of a source row's values, or why they cannot be read."""
    if values["messages"] is not None:
        messages, problem = parse_messages(values["messages"])
        return (None, None, problem) if problem else (first_user_turn(messages), messages, None)
    instruction = values["instruction"]
    if isinstance(instruction, str):
        return instruction, None, None
    kind = type(instruction).__name__
    return None, None, "missing_instruction" if instruction is None else f"invalid_instruction: {kind}, not text"


def _text_problem(row: PromptRow, max_chars: int) -> str | None:
    instruction = row.instruction or ""
    if not instruction.strip():
        return "empty_instruction: empty or whitespace only"
    if len(instruction) > max_chars:
        return f"instruction_too_long: {len(instruction)} characters, over the limit of {max_chars}"
    return _control_problem(row)


def _control_problem(row: PromptRow) -> str | None:
    """Return why the text a model would be sent holds a control character (NUL and the like), or None."""
    texts = [("the instruction", row.instruction), ("the system prompt", row.system_prompt)]
    texts += [(f"message {i + 1}", m["content"]) for i, m in enumerate(row.messages or [])]
    for where, text in texts:
        found = _CONTROL.search(text or "")
        if found:
            code = ord(found.group())
            name = "NUL" if code == 0 else "a control character"
            return (
                f"{CONTROL_CHARACTER}: U+{code:04X} ({name}) in {where} at character {found.start() + 1} "
                f"of {row.source_ref}; remove it from the source"
            )
    return None


def parse_messages(value: Any) -> tuple[list[Message], str | None]:
    """Validate a chat ``messages`` value; return the messages and a problem, if any."""
    if isinstance(value, str):
        if json_too_deep_at(value) is not None:
            return [], f"invalid_messages: {too_deep()}"
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            return [], f"invalid_messages: not valid JSON ({err.msg} at char {err.pos})"
    if not isinstance(value, list) or not value:
        return [], "invalid_messages: must be a non-empty list of {role, content}"
    out: list[Message] = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            return [], f"invalid_messages: item {i} is not an object"
        role, content = message.get("role"), _text_content(message.get("content"))
        role = _ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in _ROLES or not isinstance(content, str):
            return [], f"invalid_messages: item {i} needs a role in {sorted(_ROLES)} and text content"
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        return [], "invalid_messages: no user turn"
    if out[-1]["role"] == "assistant":
        return [], "invalid_messages: ends with an assistant turn, nothing left to answer"
    return out, None


def _text_content(content: Any) -> str | None:
    """Return text content: a string, or a list of text parts ({"type": "text", "text": ...}) joined; else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = [p.get("text") if isinstance(p, Mapping) and p.get("type", "text") == "text" else None for p in content]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def first_user_turn(messages: Sequence[Message]) -> str:
    """Return the content of the first user message."""
    return next(m["content"] for m in messages if m["role"] == "user")


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
