"""Judge requests and judge-answer parsing for one aspect of the rubric.

Everything read from a judge is bounded: an answer longer than ``MAX_ANSWER_CHARS`` is not read, JSON deeper than
``MAX_DEPTH`` is not decoded, and what is stored (raw text, rationales) is cut by ``clip``. Answers are shown
between tags the answers cannot write, and a verdict quoted from an answer never counts as the judge's.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import reprlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pref_assets.core.embedded_json import MAX_DEPTH, MAX_VALUES, Found, Scan, scan_json
from pref_assets.core.ids import stable_hash
from pref_assets.core.rubric import ANSWER_BLOCK, JUDGE_SYSTEM, JUDGE_TEMPLATE, Aspect

RATIONALE_MAX_CHARS = 400
UNPARSEABLE = "judge_unparseable"
TRUNCATED = "judge_truncated"
AMBIGUOUS = "ambiguous"
MAX_ANSWER_CHARS = 500_000
RAW_TEXT_KEPT_BYTES = 20_000
RATIONALE_KEPT_BYTES = 2_000
REASON_KEPT_BYTES = 2_000


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


def clip(text: str | None, max_bytes: int) -> str | None:
    """Return ``text`` whole if it fits in ``max_bytes`` UTF-8 bytes, else its head and a marker saying how many
    characters were cut, the two together within ``max_bytes``."""
    if text is None or len(text) * 4 <= max_bytes:
        return text
    head = text[: max_bytes + 1].encode("utf-8", "surrogatepass")
    if len(head) <= max_bytes:
        return text
    room = max(0, max_bytes - _MARKER_ROOM)
    kept = head[:room].decode("utf-8", "ignore")
    return f"{kept}\n[cut: {len(text) - len(kept):,} of {len(text):,} characters not kept]"


_MARKER_ROOM = 80


def delimiter_key(instruction: str, answers: Sequence[str]) -> str:
    """Return the key in the tags around a prompt's answers: a hash of the prompt and the answers themselves,
    so no answer can contain the tag that closes it."""
    return stable_hash("answer-delimiter", instruction, *answers)[:12]


def judge_messages(instruction: str, answers: Sequence[str], aspect: Aspect) -> list[dict[str, str]]:
    """Return the chat messages asking the judge to rate ``answers`` in the order given.

    Each answer stands between tags holding its number and ``delimiter_key``; tags and answer headings inside
    the instruction or an answer are escaped, so neither can close an answer or open another one.
    """
    keys = [answer_key(i) for i in range(len(answers))]
    key = delimiter_key(instruction, answers)
    shown = "\n\n".join(
        ANSWER_BLOCK.format(number=i + 1, tag=f"answer-{i + 1}-{key}", text=_escaped(text))
        for i, text in enumerate(answers)
    )
    user = JUDGE_TEMPLATE.format(
        aspect=aspect.name,
        focus=aspect.focus,
        scale="\n".join(f"{i + 1}: {line}" for i, line in enumerate(aspect.scale)),
        extra=_extra_text(aspect),
        instruction=_escaped(instruction),
        key=key,
        answers=shown,
        keys=", ".join(f'"{k}"' for k in keys),
        error_field=', "error_kind"' if aspect.error_kinds else "",
        allowed=" or ".join(json.dumps(v) for v in aspect.allowed),
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# An answer tag as the judge prompt writes it, opening or closing; and a markdown heading naming an answer.
_TAG = re.compile(r"<(/?)(answer-\d+-[0-9a-f]+)>", re.I)
_TAG_START = re.compile(r"<(/?\s*answer-)", re.I)
_ANSWER_HEADING = re.compile(r"^([ \t]*)(#+[ \t]*(?:answer|text|response|output)\b)", re.I | re.M)


def _escaped(text: str) -> str:
    """Return ``text`` with anything that could pass for an answer tag or an answer heading made inert."""
    return _ANSWER_HEADING.sub(r"\1\\\2", _TAG_START.sub(r"&lt;\1", text))


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


def parse_verdicts(text: str, n_answers: int, aspect: Aspect, *, answers: Sequence[str] = ()) -> list[Verdict]:
    """Return one verdict per answer, in shown order, or raise JudgeParseError.

    An answer that is one JSON value (structured output; fences allowed) is the verdict. Otherwise the judge's
    own text is searched: thinking blocks, answers it quotes (between answer tags, in blockquotes or quotation
    marks, or JSON found in the shown ``answers``) never count. Two different verdicts fail as ambiguous;
    without JSON verdicts, free text (``Answer 1`` blocks with ``Rating:`` lines) is read.
    """
    text = text or ""
    if len(text) > MAX_ANSWER_CHARS:
        raise JudgeParseError(
            UNPARSEABLE, f"the answer has {len(text):,} characters; at most {MAX_ANSWER_CHARS:,} are read"
        )
    text = _without_thinking(text).strip()
    if not text:
        raise JudgeParseError(UNPARSEABLE, "empty answer")
    scan = scan_json(text)
    whole = _whole_value(scan, text)
    if _is_document(whole) and _verdict_items(whole, n_answers) is not None:
        return _verdicts_from_json(whole, n_answers, aspect)
    own = _without_quotes(text)
    if own != text:
        scan = scan_json(own)
    candidates = _unquoted(own, scan, n_answers, answers)
    if candidates:
        return _single_verdict(candidates, n_answers, aspect)
    try:
        return _verdicts_from_text(own, n_answers, aspect)
    except JudgeParseError:
        problem = _json_problem(scan, n_answers)
        if problem is None:
            raise
    raise JudgeParseError(UNPARSEABLE, problem)


# A reasoning model's thinking, closed: what follows is the answer. An unclosed block is left as it is.
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.I)
_THINK_CLOSE = {kind: re.compile(f"</{kind}>", re.I) for kind in ("think", "thinking", "reasoning")}


def _without_thinking(text: str) -> str:
    """Return ``text`` without its closed thinking blocks, in one pass."""
    closes = {kind: [m.start() for m in pattern.finditer(text)] for kind, pattern in _THINK_CLOSE.items()}
    parts, at = [], 0
    for opening in _THINK_OPEN.finditer(text):
        if opening.start() < at:
            continue
        kind = opening.group(1).lower()
        ends = closes[kind]
        index = bisect.bisect_left(ends, opening.end())
        if index == len(ends):
            continue
        parts.append(text[at : opening.start()])
        at = ends[index] + len(kind) + 3
    return "".join(parts) + text[at:]


_FENCE_BEFORE = re.compile(r"\s*(?:```[\w-]*\s*)?")
_FENCE_AFTER = re.compile(r"\s*(?:```\s*)?")


def _whole_value(scan: Scan, text: str) -> Any | None:
    """Return the JSON value that is the whole text (in fences or not), else None."""
    if len(scan.found) != 1:
        return None
    only = scan.found[0]
    if _FENCE_BEFORE.fullmatch(text, 0, only.start) and _FENCE_AFTER.fullmatch(text, only.end):
        return only.value
    return None


_BLOCKQUOTE = re.compile(r"^[ \t]*>[^\n]*\n?", re.M)


def _without_quotes(text: str) -> str:
    """Return the judge's own text: answer tags with what they hold, and blockquote lines, removed."""
    tags = list(_TAG.finditer(text))
    closes: dict[str, list[int]] = {}
    for tag in tags:
        if tag.group(1):
            closes.setdefault(tag.group(2).lower(), []).append(tag.start())
    parts, at = [], 0
    for tag in tags:
        if tag.group(1) or tag.start() < at:
            continue
        ends = closes.get(tag.group(2).lower(), [])
        index = bisect.bisect_left(ends, tag.end())
        if index == len(ends):
            continue
        parts.append(text[at : tag.start()])
        at = ends[index] + len(tag.group(2)) + 3
    return _BLOCKQUOTE.sub("", "".join(parts) + text[at:])


# Quotation marks around a JSON value make it a quote (code spans and fences are how judges show their own JSON).
_OPEN_QUOTES = '"\u201c\u00ab'
_CLOSE_QUOTES = '"\u201d\u00bb'


def _unquoted(text: str, scan: Scan, n: int, answers: Sequence[str]) -> list[Any]:
    """Return the verdict-shaped values the judge wrote itself: not in quotation marks, not found in an answer."""
    candidates = [
        value
        for found in scan.found
        if not _in_quotation_marks(text, found)
        for value in _shaped_values(found.value, n)
    ]
    if not candidates or not answers:
        return candidates
    quoted = {_canonical(v) for answer in answers for f in scan_json(answer[:MAX_ANSWER_CHARS]).found
              for v in _shaped_values(f.value, n)}  # fmt: skip
    return [value for value in candidates if _canonical(value) not in quoted]


def _in_quotation_marks(text: str, found: Found) -> bool:
    before = text[found.start - 1] if found.start else ""
    after = text[found.end] if found.end < len(text) else ""
    return bool(before) and before in _OPEN_QUOTES and bool(after) and after in _CLOSE_QUOTES


def _shaped_values(value: Any, n: int) -> Iterator[Any]:
    """Yield the outermost objects, or lists of objects, inside ``value`` (itself included) shaped like verdicts
    for ``n`` answers, in document order; the walk is bounded by the decoded depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if _is_document(item) and _verdict_items(item, n) is not None:
            yield item
            continue
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend(reversed([c for c in children if isinstance(c, (dict, list))]))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _single_verdict(candidates: list[Any], n: int, aspect: Aspect) -> list[Verdict]:
    """Return the verdicts of the one verdict the candidates agree on; an unreadable candidate is passed over
    when a readable one exists. Different readable verdicts raise: guessing would pick one at random."""
    read: list[list[Verdict]] = []
    error: JudgeParseError | None = None
    for candidate in candidates:
        try:
            read.append(_verdicts_from_json(candidate, n, aspect))
        except JudgeParseError as err:
            error = err
    if not read and error is not None:
        raise error
    distinct = list(dict.fromkeys(tuple((v.rating, v.error_kind) for v in verdicts) for verdicts in read))
    if len(distinct) > 1:
        raise _ambiguous([[rating for rating, _ in d] for d in distinct])
    return read[-1]


def _ambiguous(verdicts: Sequence[Sequence[int | None]]) -> JudgeParseError:
    shown = " and ".join(str(list(v)) for v in verdicts[:3])
    detail = f"{AMBIGUOUS}: the answer holds {len(verdicts)} different verdicts (ratings {shown}); none is taken"
    return JudgeParseError(UNPARSEABLE, detail)


def _json_problem(scan: Scan, n: int) -> str | None:
    """Return what is wrong with the JSON a judge attempted, or None when it attempted none."""
    if scan.too_deep:
        return f"JSON nested deeper than {MAX_DEPTH} levels is not read"
    if scan.cut_off:
        return "the verdict is cut off (unbalanced JSON at the end of the answer)"
    if scan.too_many:
        return f"the answer holds more than {MAX_VALUES} JSON values; none is read"
    documents = [f for f in scan.found if _is_document(f.value)]
    if documents:
        return _shape_problem(max(documents, key=lambda f: f.end - f.start).value, n)
    return None


def _is_document(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


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
        return f"expected keys {expected}, found {_listed(sorted(map(str, document)))}"
    if len(document) != n:
        return f"expected {n} ratings, found {len(document)}"
    labels = [_item_label(item) for item in document]
    return f"expected the {n} ratings labelled answer 1..{n} once each or not at all, found labels {labels}"


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60
_SHOW.maxlist = _SHOW.maxdict = 6
_SHOW.maxlevel = 3
_LISTED = 10


def _show(value: Any) -> str:
    """Return a short repr of a value read from a judge, whatever its size."""
    return _SHOW.repr(value)


def _listed(items: Sequence[Any]) -> str:
    """Return the first items of a list for a message, saying how many more there are."""
    shown = [_SHOW.repr(item) if isinstance(item, str) else item for item in items[:_LISTED]]
    more = f" and {len(items) - _LISTED:,} more" if len(items) > _LISTED else ""
    return f"[{', '.join(map(str, shown))}]{more}"


# "answer_1", "Answer 1", "answer1", "text_1", "response 1", "1"
_ANSWER_KEY = re.compile(r"(?:answer|text|response|output)?[\s_#-]*(\d{1,6})", re.I)
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
        raise JudgeParseError(UNPARSEABLE, f"{where}: unknown error kind {_show(value)}")
    return kind


_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NA = re.compile(r"^n\s*/?\s*a\.?$", re.IGNORECASE)
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5|stars?)?\.?$", re.IGNORECASE)


def read_rating(value: Any, aspect: Aspect, *, where: str) -> int | None:
    """Return a rating from an int, "4", "4/5", "four" or N/A; raise if it is not allowed."""
    if isinstance(value, bool):
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {_show(value)} is not a number")
    if isinstance(value, str):
        value = _rating_from_text(value.strip().strip("*").strip(), aspect, where)
        if value is None:
            return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value not in aspect.allowed:
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {_show(value)} is not one of {aspect.allowed}")
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
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {_show(text)} is not a number")
    return float(match.group(1))


# A block starts at a line naming an answer ("## Answer 1", "**Answer 2:**", "Answer 1: 4", "Text 2 - Rating: 3");
# "Answer 2 is better" inside a rationale is prose, not a block. Line patterns never reach past their line, and no
# two neighbouring parts can match the same characters: each line is read once, whatever it holds.
_BLOCK = re.compile(
    r"^[#* \t]*(?:answer|text|output for text|response)[ \t]*(?:#[ \t]*)?(\d{1,6})[ \t]*"
    r"((?:[*:#().\]\u2013\u2014-][^\n]*)?)$",
    re.I | re.M,
)
_HEAD_RATING = re.compile(r"[*:#().\]\s\u2013\u2014-]*(?:(?:rating|score)\s*[*]*\s*[:=-]?)?[\s*]*(.*)", re.I)
_SEPARATOR = r"[ \t]*(?:\*+[ \t]*)?[:=-][ \t]*(?:\*+[ \t]*)?"
_RATING = re.compile(
    r"^[#* \t]*(?:overall[ \t]+)?(?:rating|score)" + _SEPARATOR + r"(?:\n[ \t]*)?([^\n]+)", re.I | re.M
)
_LEAD = re.compile(r"(n\s*/\s*a|\d+(?:\.\d+)?|one|two|three|four|five)\b\.?", re.I)
# After the number, another scale ("/10", "out of 4") or a range ("3-4", "3 to 4") leaves the rating unknown.
_OTHER_SCALE = re.compile(r"\s*(?:/|out\s+of)\s*(\d+)", re.I)
_RANGE = re.compile(r"\s*(?:-|\u2013|to|or)\s*(?:\d|one|two|three|four|five)\b", re.I)
_RATIONALE = re.compile(r"^[#* \t]*(?:rationale|reason|explanation)" + _SEPARATOR, re.I | re.M)
_RATING_LINE = re.compile(r"^[#* \t]*(?:overall[ \t]+)?(?:rating|score)\b", re.I | re.M)


def _verdicts_from_text(text: str, n: int, aspect: Aspect) -> list[Verdict]:
    """Return the verdicts of ``Answer 1..n`` blocks; the whole set written more than once counts once when every
    copy gives the same ratings, and fails as ambiguous when they differ."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    marks = list(_BLOCK.finditer(text))
    numbers = [int(m.group(1)) for m in marks]
    if not numbers or numbers != list(range(1, n + 1)) * (len(numbers) // n):
        found = _listed(numbers) if numbers else "none"
        raise JudgeParseError(UNPARSEABLE, f"expected answer blocks 1..{n}, found {found}")
    ends = [m.start() for m in marks[1:]] + [len(text)]
    blocks = [(m.group(2), text[m.end() : end]) for m, end in zip(marks, ends, strict=True)]
    sets = [
        [_verdict_from_block(head, body, i % n, aspect) for i, (head, body) in enumerate(blocks[k : k + n], k)]
        for k in range(0, len(blocks), n)
    ]
    distinct = list(dict.fromkeys(tuple(v.rating for v in verdicts) for verdicts in sets))
    if len(distinct) > 1:
        raise _ambiguous(distinct)
    return sets[-1]


def _verdict_from_block(head: str, body: str, index: int, aspect: Aspect) -> Verdict:
    where = f"answer {index + 1}"
    ratings = _RATING.findall(body)
    inline = _HEAD_RATING.fullmatch(head)
    if inline is not None and _LEAD.match(inline.group(1).strip()):
        ratings.insert(0, inline.group(1))
    if len(ratings) != 1:
        raise JudgeParseError(UNPARSEABLE, f"{where}: expected one rating, found {len(ratings)}")
    rating = read_rating(_rating_text(ratings[0], where), aspect, where=where)
    return Verdict(rating, _rationale(body))


def _rationale(body: str) -> str:
    """Return the text after a block's ``Rationale:`` up to its rating line, or ""."""
    start = _RATIONALE.search(body)
    if start is None:
        return ""
    stop = _RATING_LINE.search(body, start.end())
    return body[start.end() : stop.start() if stop else len(body)].strip()


def _rating_text(value: str, where: str) -> str:
    """Return the rating at the start of a rating line; raise if it is on another scale or a range."""
    value = value.strip().strip("*").strip()
    lead = _LEAD.match(value)
    if lead is None:
        return value
    rest = value[lead.end() :]
    scale = _OTHER_SCALE.match(rest)
    if scale is not None and scale.group(1) != "5":
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {_show(value)} is on another scale than 1-5")
    if _RANGE.match(rest):
        raise JudgeParseError(UNPARSEABLE, f"{where}: rating {_show(value)} is a range, not one rating")
    return lead.group(1)
