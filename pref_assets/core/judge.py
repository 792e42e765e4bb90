"""Judge requests and judge-answer parsing for one aspect of the rubric."""

from __future__ import annotations

import itertools
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
    if not text or not text.strip():
        raise JudgeParseError(UNPARSEABLE, "empty answer")
    document = _load_json(text)
    if document is not None:
        return _verdicts_from_json(document, n_answers, aspect)
    return _verdicts_from_text(text, n_answers, aspect)


def _load_json(text: str) -> Any | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start : end + 1], strict=False)
    except json.JSONDecodeError:
        return None


def _verdicts_from_json(document: Any, n: int, aspect: Aspect) -> list[Verdict]:
    if not isinstance(document, dict):
        raise JudgeParseError(UNPARSEABLE, "JSON is not an object")
    items = document.get("ratings") if isinstance(document.get("ratings"), list) else None
    if items is None:
        found = sorted(k for k in document if re.fullmatch(r"answer_\d+", str(k)))
        expected = [answer_key(i) for i in range(n)]
        if sorted(found) != sorted(expected):
            raise JudgeParseError(UNPARSEABLE, f"expected keys {expected}, found {found}")
        items = [document[k] for k in expected]
    if len(items) != n:
        raise JudgeParseError(UNPARSEABLE, f"expected {n} ratings, found {len(items)}")
    return [_verdict_from_item(item, i, aspect) for i, item in enumerate(items)]


def _verdict_from_item(item: Any, index: int, aspect: Aspect) -> Verdict:
    if not isinstance(item, dict):
        raise JudgeParseError(UNPARSEABLE, f"answer {index + 1}: not an object")
    rating = read_rating(item.get("rating"), aspect, where=f"answer {index + 1}")
    rationale = item.get("rationale")
    kind = item.get("error_kind")
    if aspect.error_kinds and kind is not None and kind not in aspect.error_kinds:
        raise JudgeParseError(UNPARSEABLE, f"answer {index + 1}: unknown error kind {kind!r}")
    return Verdict(rating, str(rationale or "").strip(), kind if aspect.error_kinds else None)


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


_BLOCK = re.compile(r"^[#*\s]*(?:answer|text|output for text|response)\s*#?\s*(\d+)\b", re.I | re.M)
_RATING = re.compile(r"^[#*\s]*(?:rating|score)\s*[*]*\s*[:=-]\s*[*]*\s*([^\n]+)", re.I | re.M)
_LEAD = re.compile(r"n\s*/\s*a|\d+(?:\.\d+)?(?:\s*(?:/\s*5|out of 5))?|one|two|three|four|five", re.I)
_RATIONALE = re.compile(r"^[#*\s]*rationale\s*[*]*\s*[:=-]\s*[*]*\s*(.+)", re.I | re.M | re.S)


def _verdicts_from_text(text: str, n: int, aspect: Aspect) -> list[Verdict]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    marks = list(_BLOCK.finditer(text))
    numbers = [int(m.group(1)) for m in marks]
    if numbers != list(range(1, n + 1)):
        raise JudgeParseError(UNPARSEABLE, f"expected answer blocks 1..{n}, found {numbers or 'none'}")
    bounds = [m.start() for m in marks] + [len(text)]
    return [_verdict_from_block(text[a:b], i, aspect) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def _verdict_from_block(block: str, index: int, aspect: Aspect) -> Verdict:
    ratings = _RATING.findall(block)
    if len(ratings) != 1:
        raise JudgeParseError(UNPARSEABLE, f"answer {index + 1}: expected one rating, found {len(ratings)}")
    lead = _LEAD.match(ratings[0].strip().strip("*").strip())
    value = lead.group(0) if lead else ratings[0].strip()
    rating = read_rating(value, aspect, where=f"answer {index + 1}")
    rationale = _RATIONALE.search(block)
    return Verdict(rating, rationale.group(1).strip() if rationale else "")
