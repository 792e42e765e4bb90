"""Judge requests and judge-answer parsing for one aspect of the rubric."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pref_assets.core.rubric import JUDGE_SYSTEM, JUDGE_TEMPLATE, Aspect

RATIONALE_MAX_CHARS = 400
UNPARSEABLE = "judge_unparseable"
TRUNCATED = "judge_truncated"


class JudgeParseError(ValueError):
    """A judge answer that cannot be read as exactly one valid rating per answer."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's reading of one answer for one aspect. ``rating`` is None only for N/A."""

    rating: int | None
    rationale: str
    error_kind: str | None = None


def presentation_order(seed: str, n: int) -> list[int]:
    """Return a permutation of range(n), fixed by ``seed`` (the prompt id)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def answer_key(position: int) -> str:
    """Return the JSON key of the answer shown at 0-based ``position``."""
    return f"answer_{position + 1}"


def judge_messages(instruction: str, answers: Sequence[str], aspect: Aspect) -> list[dict[str, str]]:
    """Return the chat messages asking the judge to rate ``answers`` in the order given."""
    keys = [answer_key(i) for i in range(len(answers))]
    shown = "\n\n".join(f"## Answer {i + 1}\n{text}" for i, text in enumerate(answers))
    user = JUDGE_TEMPLATE.format(
        aspect=aspect.name,
        focus=aspect.focus,
        scale="\n".join(f"{i + 1}: {line}" for i, line in enumerate(aspect.scale)),
        extra=_extra_text(aspect),
        instruction=instruction,
        answers=shown,
        keys=", ".join(f'"{k}"' for k in keys),
        error_field=', "error_kind"' if aspect.error_kinds else "",
        allowed=" or ".join(json.dumps(v) for v in aspect.allowed),
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _extra_text(aspect: Aspect) -> str:
    lines = []
    if aspect.allows_na:
        lines.append('"N/A": the task has nothing that can be right or wrong.')
    if aspect.error_kinds:
        lines.append("Error kinds (pick the main one): " + ", ".join(aspect.error_kinds) + ".")
    return "".join(f"{line}\n" for line in lines)


def judge_schema(n_answers: int, aspect: Aspect) -> dict[str, Any]:
    """Return a JSON schema that admits exactly one verdict per answer."""
    item: dict[str, Any] = {
        "type": "object",
        "properties": {"rationale": {"type": "string", "maxLength": RATIONALE_MAX_CHARS}},
        "required": ["rationale", "rating"],
    }
    if aspect.error_kinds:
        item["properties"]["error_kind"] = {"enum": list(aspect.error_kinds)}
        item["required"] = ["rationale", "error_kind", "rating"]
    item["properties"]["rating"] = {"enum": list(aspect.allowed)}
    keys = [answer_key(i) for i in range(n_answers)]
    return {"type": "object", "properties": {k: item for k in keys}, "required": keys}


def parse_verdicts(text: str, n_answers: int, aspect: Aspect) -> list[Verdict]:
    """Return one verdict per answer, in shown order, or raise JudgeParseError."""
    text = _THINK.sub("", text or "").strip()
    if not text:
        raise JudgeParseError(UNPARSEABLE, "empty answer")
    document = _load_json(text, n_answers)
    if document is not None and _verdict_items(document, n_answers) is not None:
        return _verdicts_from_json(document, n_answers, aspect)
    try:
        return _verdicts_from_text(text, n_answers, aspect)
    except JudgeParseError:
        if document is None:
            raise
    # JSON was attempted: its shape is the problem worth reporting
    return _verdicts_from_json(document, n_answers, aspect)


# A reasoning model's thinking, closed: what follows is the answer. An unclosed block is left as it is.
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.I | re.S)
_DECODER = json.JSONDecoder(strict=False)


def _load_json(text: str, n: int) -> Any | None:
    """Return the last JSON object or array in ``text`` shaped like verdicts for ``n`` answers, else the last
    one found (its shape is reported), else None: the text is then read as plain text."""
    found = []
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            found.append(value)
    shaped = [v for v in found if _verdict_items(v, n) is not None]
    if shaped:
        return shaped[-1]
    return max(found, key=lambda v: len(json.dumps(v)), default=None)


def _verdicts_from_json(document: Any, n: int, aspect: Aspect) -> list[Verdict]:
    items = _verdict_items(document, n)
    if items is None:
        raise JudgeParseError(UNPARSEABLE, _shape_problem(document, n))
    return [_verdict_from_item(item, i, aspect) for i, item in enumerate(items)]


def _verdict_items(document: Any, n: int) -> list[Any] | None:
    """Return the verdict items of ``document`` in shown order, or None if it holds no clean set of ``n``."""
    if isinstance(document, dict):
        inner = _lower_keys(document).get("ratings")
        if isinstance(inner, (list, dict)):
            return _verdict_items(inner, n)
        keyed = {}
        for key, value in document.items():
            index = _answer_index(key)
            if index is not None:
                if index in keyed:
                    return None
                keyed[index] = value
        return [keyed[i] for i in range(1, n + 1)] if sorted(keyed) == list(range(1, n + 1)) else None
    if isinstance(document, list) and len(document) == n:
        labels = [_item_label(item) for item in document]
        if all(label is None for label in labels):
            return list(document)
        if sorted(label for label in labels if label is not None) == list(range(1, n + 1)):
            return [document[labels.index(i)] for i in range(1, n + 1)]
    return None


def _shape_problem(document: Any, n: int) -> str:
    expected = [answer_key(i) for i in range(n)]
    if isinstance(document, dict):
        inner = _lower_keys(document).get("ratings")
        if isinstance(inner, (list, dict)):
            return _shape_problem(inner, n)
        return f"expected keys {expected}, found {sorted(map(str, document))}"
    if len(document) != n:
        return f"expected {n} ratings, found {len(document)}"
    labels = [_item_label(item) for item in document]
    return f"expected the {n} ratings labelled answer 1..{n} once each or not at all, found labels {labels}"


# "answer_1", "Answer 1", "answer1", "text_1", "response 1", "1"
_ANSWER_KEY = re.compile(r"(?:answer|text|response|output)?[\s_#-]*(\d+)", re.I)
_LABEL_FIELDS = ("answer", "answer_id", "answer_index", "answer_number", "index", "id", "text_id", "response")


def _answer_index(key: object) -> int | None:
    match = _ANSWER_KEY.fullmatch(str(key).strip())
    return int(match.group(1)) if match else None


def _item_label(item: Any) -> int | None:
    """Return the 1-based answer number an item names itself by, or None."""
    if not isinstance(item, dict):
        return None
    fields = _lower_keys(item)
    for field in _LABEL_FIELDS:
        value = fields.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _answer_index(value) is not None:
            return _answer_index(value)
    return None


def _lower_keys(item: dict[Any, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in item.items()}


def _verdict_from_item(item: Any, index: int, aspect: Aspect) -> Verdict:
    where = f"answer {index + 1}"
    if not isinstance(item, dict):
        # {"answer_1": 4}: a bare rating
        return Verdict(read_rating(item, aspect, where=where), "", None)
    fields = _lower_keys(item)
    if "rating" not in fields and "score" not in fields:
        raise JudgeParseError(UNPARSEABLE, f"{where}: no rating")
    rating = read_rating(fields.get("rating", fields.get("score")), aspect, where=where)
    rationale = fields.get("rationale", fields.get("reason"))
    return Verdict(rating, str(rationale or "").strip(), _error_kind(fields.get("error_kind"), aspect, where))


def _error_kind(value: Any, aspect: Aspect, where: str) -> str | None:
    if not aspect.error_kinds or value is None:
        return None
    kind = re.sub(r"[\s-]+", "_", str(value).strip().lower())
    if kind not in aspect.error_kinds:
        raise JudgeParseError(UNPARSEABLE, f"{where}: unknown error kind {value!r}")
    return kind


_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NA = re.compile(r"^n\s*/?\s*a\.?$", re.IGNORECASE)
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5|stars?)?\.?$", re.IGNORECASE)


def read_rating(value: Any, aspect: Aspect, *, where: str) -> int | None:
    """Return a rating from an int, "4", "4/5", "four" or N/A; raise if it is not allowed."""
    if isinstance(value, bool):
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {value!r} is not a number")
    if isinstance(value, str):
        value = _rating_from_text(value.strip().strip("*").strip(), aspect, where)
        if value is None:
            return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value not in aspect.allowed:
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {value!r} is not one of {aspect.allowed}")
    return value


def _rating_from_text(text: str, aspect: Aspect, where: str) -> int | float | None:
    if _NA.match(text):
        if aspect.allows_na:
            return None
        raise JudgeParseError(UNPARSEABLE, f"{where}: N/A is not allowed for {aspect.name}")
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    match = _NUMBER.match(text)
    if not match:
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {text!r} is not a number")
    return float(match.group(1))


# A block starts at a line naming an answer ("## Answer 1", "**Answer 2:**", "Answer 1: 4", "Text 2 - Rating: 3");
# "Answer 2 is better" inside a rationale is prose, not a block.
_BLOCK = re.compile(
    r"^[#*\s]*(?:answer|text|output for text|response)\s*#?\s*(\d+)[ \t]*((?:[*:#().\]\u2013\u2014-][^\n]*)?)$",
    re.I | re.M,
)
_HEAD_RATING = re.compile(r"[*:#().\]\s\u2013\u2014-]*(?:(?:rating|score)\s*[*]*\s*[:=-]?)?[\s*]*(.*)", re.I)
_RATING = re.compile(r"^[#*\s]*(?:overall\s+)?(?:rating|score)\s*[*]*\s*[:=-]\s*[*]*\s*([^\n]+)", re.I | re.M)
_LEAD = re.compile(r"(n\s*/\s*a|\d+(?:\.\d+)?|one|two|three|four|five)\b\.?", re.I)
# After the number, another scale ("/10", "out of 4") or a range ("3-4", "3 to 4") leaves the rating unknown.
_OTHER_SCALE = re.compile(r"\s*(?:/|out\s+of)\s*(\d+)", re.I)
_RANGE = re.compile(r"\s*(?:-|\u2013|to|or)\s*(?:\d|one|two|three|four|five)\b", re.I)
_RATIONALE = re.compile(
    r"^[#*\s]*(?:rationale|reason|explanation)\s*[*]*\s*[:=-]\s*[*]*\s*(.+?)\s*"
    r"(?=^[#*\s]*(?:overall\s+)?(?:rating|score)\b|\Z)",
    re.I | re.M | re.S,
)


def _verdicts_from_text(text: str, n: int, aspect: Aspect) -> list[Verdict]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    marks = list(_BLOCK.finditer(text))
    numbers = [int(m.group(1)) for m in marks]
    if numbers != list(range(1, n + 1)):
        raise JudgeParseError(UNPARSEABLE, f"expected answer blocks 1..{n}, found {numbers or 'none'}")
    ends = [m.start() for m in marks[1:]] + [len(text)]
    blocks = [(m.group(2), text[m.end() : end]) for m, end in zip(marks, ends, strict=True)]
    return [_verdict_from_block(head, body, i, aspect) for i, (head, body) in enumerate(blocks)]


def _verdict_from_block(head: str, body: str, index: int, aspect: Aspect) -> Verdict:
    where = f"answer {index + 1}"
    ratings = _RATING.findall(body)
    inline = _HEAD_RATING.fullmatch(head)
    if inline is not None and _LEAD.match(inline.group(1).strip()):
        ratings.insert(0, inline.group(1))
    if len(ratings) != 1:
        raise JudgeParseError(UNPARSEABLE, f"{where}: expected one rating, found {len(ratings)}")
    rating = read_rating(_rating_text(ratings[0], where), aspect, where=where)
    rationale = _RATIONALE.search(body)
    return Verdict(rating, rationale.group(1).strip() if rationale else "")


def _rating_text(value: str, where: str) -> str:
    """Return the rating at the start of a rating line; raise if it is on another scale or a range."""
    value = value.strip().strip("*").strip()
    lead = _LEAD.match(value)
    if lead is None:
        return value
    rest = value[lead.end() :]
    scale = _OTHER_SCALE.match(rest)
    if scale is not None and scale.group(1) != "5":
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {value!r} is on another scale than 1-5")
    if _RANGE.match(rest):
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {value!r} is a range, not one rating")
    return lead.group(1)
