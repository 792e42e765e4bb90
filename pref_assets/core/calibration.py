"""Judge calibration: the configured judges rate labelled pairs (a prompt, a better and a worse answer) before a run.

Each pair is shown to each judge twice, the better answer first and then second (the judge's own rubric, prompt
and parser: ``pref_assets.core.rating``), so position bias shows. A presentation's verdict is ``better`` (the
better answer scored higher; scores are the mean over the judge's aspects), ``worse``, ``tie``, or none when the
judge's answer could not be read (the failure is kept). The panel's verdict uses the mean score over the judges
that could be read, as the ``ratings`` stage scores answers.

Figures per judge and for the panel: accuracy (``better`` among read presentations), tie rate, the rate at which
the first-shown answer wins (among read presentations that are not ties; 0.5 is unbiased), parse rate, the share
of pairs judged right in both orders, and accuracy per kind of flaw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pref_assets.core.rating import JudgeSpec, Outcome
from pref_assets.core.rows import GroupedRow
from pref_assets.core.scoring import map_back

PANEL = "(panel)"
BETTER, WORSE, TIE = "better", "worse", "tie"
UNSPECIFIED = "unspecified"
MAX_FIELD_CHARS = 20_000
_ORDERS = {0: "better_first", 1: "worse_first"}


@dataclass(frozen=True, slots=True)
class CalibrationPair:
    """One labelled pair: a prompt, its better and its worse answer, and what is wrong with the worse one."""

    pair_id: str
    prompt: str
    better: str
    worse: str
    flaw: str = UNSPECIFIED
    topic: str | None = None


def parse_pairs(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[list[CalibrationPair], list[str]]:
    """Return the pairs of ``rows`` (``(where, values)``: ``prompt``, ``better``, ``worse``, optional ``flaw``,
    ``topic`` and ``id``) and a problem per row that is not a pair (that row is left out, named)."""
    pairs: list[CalibrationPair] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, (where, values) in enumerate(rows, start=1):
        texts = {name: values.get(name) for name in ("prompt", "better", "worse")}
        bad = [n for n, v in texts.items() if not isinstance(v, str) or not v.strip() or len(v) > MAX_FIELD_CHARS]
        if bad:
            problems.append(f"{where}: {', '.join(bad)} missing, empty, not text or over {MAX_FIELD_CHARS} characters")
            continue
        if texts["better"].strip() == texts["worse"].strip():
            problems.append(f"{where}: better and worse are the same text")
            continue
        pair_id = str(values.get("id") or f"pair-{number:03d}")
        if pair_id in seen:
            problems.append(f"{where}: id {pair_id!r} repeats an earlier pair's")
            continue
        seen.add(pair_id)
        flaw, topic = values.get("flaw"), values.get("topic")
        pairs.append(CalibrationPair(pair_id, texts["prompt"], texts["better"], texts["worse"],
                                     flaw if isinstance(flaw, str) and flaw else UNSPECIFIED,
                                     topic if isinstance(topic, str) and topic else None))  # fmt: skip
    return pairs, problems


def calibration_panel(judges: Sequence[JudgeSpec]) -> tuple[JudgeSpec, ...]:
    """Return the judges as calibration runs them: no shuffle and a position-swapped second pass (so each pair is
    seen better-first and worse-first), both answers in one call, every pair judged."""
    options = {"shuffle": False, "position_swap": True, "rate_single_answers": False}
    return tuple(replace(j, **options) for j in judges)


def grouped_rows(pairs: Sequence[CalibrationPair]) -> list[GroupedRow]:
    """Return each pair as a grouped prompt with two answers, the better in slot 0; the pair id is its key."""
    slots = {"generation_models": [BETTER, WORSE], "generation_status": ["ok"] * 2, "generation_reasons": [None] * 2}
    return [
        GroupedRow(row_id=f"calibration#{i}", prompt_id=p.pair_id, instruction=p.prompt, topic=p.topic,
                   generations=[p.better, p.worse], **slots)
        for i, p in enumerate(pairs)
    ]


@dataclass(frozen=True, slots=True)
class Presentation:
    """One pair shown to one judge (or the panel) in one order, and what came of it."""

    pair_id: str
    flaw: str
    topic: str | None
    judge: str
    order: str
    better_score: float | None
    worse_score: float | None
    verdict: str | None
    failure: str | None = None

    @property
    def first_won(self) -> bool:
        """Return whether the answer shown first scored higher."""
        return self.verdict == (BETTER if self.order == _ORDERS[0] else WORSE)


def presentations(
    pairs: Sequence[CalibrationPair], outcomes: Sequence[Outcome], judges: Sequence[str]
) -> list[Presentation]:
    """Return every judge's presentations of every pair (both orders), then the panel's."""
    calls: dict[tuple[str, str, int], list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        calls[(outcome.task.prompt_id, outcome.task.judge, outcome.task.pass_index)].append(outcome)
    out: list[Presentation] = []
    panel: list[Presentation] = []
    for pair in pairs:
        for pass_index, order in _ORDERS.items():
            mine = [_presentation(pair, judge, order, calls.get((pair.pair_id, judge, pass_index), []))
                    for judge in judges]  # fmt: skip
            out += mine
            panel.append(_panel(pair, order, mine))
    return out + panel


def _presentation(pair: CalibrationPair, judge: str, order: str, outcomes: list[Outcome]) -> Presentation:
    if not outcomes:
        return Presentation(pair.pair_id, pair.flaw, pair.topic, judge, order, None, None, None, "not judged")
    unread = [o for o in outcomes if o.verdicts is None]
    if unread:
        return Presentation(pair.pair_id, pair.flaw, pair.topic, judge, order, None, None, None, unread[0].reason)
    slots: list[list[int]] = [[], []]
    for outcome in outcomes:
        for slot, verdict in enumerate(map_back(outcome.verdicts, outcome.task.shown, 2)):
            if verdict is not None and verdict.rating is not None:
                slots[slot].append(verdict.rating)
    better, worse = (sum(s) / len(s) if s else None for s in slots)
    return _scored(pair, judge, order, better, worse)


def _panel(pair: CalibrationPair, order: str, judged: list[Presentation]) -> Presentation:
    read = [p for p in judged if p.better_score is not None and p.worse_score is not None]
    if not read:
        failure = "; ".join(f"{p.judge}: {p.failure or 'no rating'}" for p in judged)
        return Presentation(pair.pair_id, pair.flaw, pair.topic, PANEL, order, None, None, None, failure)
    better = sum(p.better_score for p in read) / len(read)  # type: ignore[misc]
    worse = sum(p.worse_score for p in read) / len(read)  # type: ignore[misc]
    return _scored(pair, PANEL, order, better, worse)


def _scored(pair: CalibrationPair, judge: str, order: str, better: float | None, worse: float | None) -> Presentation:
    if better is None or worse is None:  # every aspect answered N/A for one of the two
        return Presentation(pair.pair_id, pair.flaw, pair.topic, judge, order, better, worse, None, "no rating")
    verdict = BETTER if better > worse else WORSE if worse > better else TIE
    return Presentation(pair.pair_id, pair.flaw, pair.topic, judge, order, better, worse, verdict)


def calibration_report(shown: Sequence[Presentation]) -> dict[str, dict[str, Any]]:
    """Return the figures of each judge and of the panel (key ``PANEL``), in the order they appear."""
    by_judge: dict[str, list[Presentation]] = defaultdict(list)
    for p in shown:
        by_judge[p.judge].append(p)
    return {judge: _figures(items) for judge, items in by_judge.items()}


def _figures(items: Sequence[Presentation]) -> dict[str, Any]:
    read = [p for p in items if p.verdict is not None]
    decided = [p for p in read if p.verdict != TIE]
    by_pair = _by_pair(items)
    right = sum(all(p.verdict == BETTER for p in ps) for ps in by_pair.values())
    flaws: dict[str, list[Presentation]] = defaultdict(list)
    for p in read:
        flaws[p.flaw].append(p)
    return {
        "presentations": len(items),
        "parsed": len(read),
        "parse_rate": _rate(len(read), len(items)),
        "accuracy": _accuracy(read),
        "tie_rate": _rate(len(read) - len(decided), len(read)),
        "first_position_win_rate": _rate(sum(p.first_won for p in decided), len(decided)),
        "pairs": len(by_pair),
        "right_in_both_orders": _rate(right, len(by_pair)),
        "accuracy_by_flaw": {f: _accuracy(ps) for f, ps in sorted(flaws.items())},
    }


def _by_pair(items: Sequence[Presentation]) -> dict[str, list[Presentation]]:
    out: dict[str, list[Presentation]] = defaultdict(list)
    for p in items:
        out[p.pair_id].append(p)
    return out


def _accuracy(read: Sequence[Presentation]) -> float | None:
    return _rate(sum(p.verdict == BETTER for p in read), len(read))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
