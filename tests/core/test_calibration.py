"""Judge calibration: reading pairs, both orders through the judge code, and the figures per judge and panel."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from judge_fakes import FakeResult

from pref_assets.core.calibration import (
    PANEL,
    CalibrationPair,
    calibration_panel,
    calibration_report,
    grouped_rows,
    parse_pairs,
    presentations,
)
from pref_assets.core.calls import Call
from pref_assets.core.rating import JudgeSpec, judge_all, plan_tasks
from pref_assets.sources.calibration import read_calibration_pairs

PAIRS = [
    CalibrationPair("p1", "Capital of France?", "Paris.", "It is Lyon, the biggest city of France.", "wrong_facts"),
    CalibrationPair("p2", "What is 2+2?", "4", "Let me explain addition at length before answering: 4.", "verbosity"),
    CalibrationPair("p3", "Say hi.", "Hi!", "I cannot help with greetings of any kind, sorry.", "refusal"),
]


def _spec(name: str, **extra: object) -> JudgeSpec:
    base = {"name": name, "endpoint": "e", "model": name, "params": (("seed", 1),), "aspects": ("overall-rating",),
            "flavour": "json_object_schema", "shuffle": True, "max_reasks": 0}  # fmt: skip
    return JudgeSpec(**(base | extra))


def _shown(call: Call) -> list[str]:
    user = call.messages[-1]["content"]
    return [m.group(2) for m in re.finditer(r"<(answer-\d+-[0-9a-f]+)>\n(.*?)\n</\1>", user, re.S)]


def _verdict(ratings: Sequence[int]) -> str:
    return json.dumps({f"answer_{i + 1}": {"rationale": "r", "rating": r} for i, r in enumerate(ratings)})


def _judge(rate: Callable[[Call, list[str]], list[int] | None]) -> Callable[[Sequence[Call]], list[FakeResult]]:
    def run(calls: Sequence[Call]) -> list[FakeResult]:
        out = []
        for call in calls:
            ratings = rate(call, _shown(call))
            out.append(FakeResult("no verdict here" if ratings is None else _verdict(ratings)))
        return out

    return run


def _run(judges: Sequence[JudgeSpec], rate: Callable[[Call, list[str]], list[int] | None]) -> dict:
    panel = calibration_panel(judges)
    outcomes = judge_all(plan_tasks(grouped_rows(PAIRS), panel), _judge(rate))
    return calibration_report(presentations(PAIRS, outcomes, [j.name for j in panel]))


def test_each_pair_is_shown_better_first_then_worse_first() -> None:
    panel = calibration_panel([_spec("j")])
    assert not panel[0].shuffle and panel[0].position_swap
    tasks = plan_tasks(grouped_rows(PAIRS), panel)
    assert [(t.prompt_id, t.pass_index, t.shown) for t in tasks[:2]] == [("p1", 0, (0, 1)), ("p1", 1, (1, 0))]
    assert _shown(tasks[0].call) == ["Paris.", PAIRS[0].worse] and _shown(tasks[1].call)[0] == PAIRS[0].worse


def test_a_judge_that_always_prefers_the_first_answer_is_right_half_the_time() -> None:
    figures = _run([_spec("first")], lambda call, shown: [5, 2])["first"]
    assert figures["accuracy"] == 0.5 and figures["first_position_win_rate"] == 1.0
    assert figures["tie_rate"] == 0.0 and figures["parse_rate"] == 1.0 and figures["right_in_both_orders"] == 0.0


def test_a_judge_preferring_short_answers_gets_these_pairs_right_in_both_orders() -> None:
    def shorter(call: Call, shown: list[str]) -> list[int]:
        return [5, 1] if len(shown[0]) < len(shown[1]) else [1, 5]

    figures = _run([_spec("short")], shorter)
    assert figures["short"]["accuracy"] == 1.0 and figures["short"]["first_position_win_rate"] == 0.5
    assert figures["short"]["right_in_both_orders"] == 1.0
    assert figures["short"]["accuracy_by_flaw"] == {"refusal": 1.0, "verbosity": 1.0, "wrong_facts": 1.0}


def test_ties_unreadable_answers_and_the_panel_mean() -> None:
    def rate(call: Call, shown: list[str]) -> list[int] | None:
        if call.model == "broken":
            return None if "France" in call.messages[-1]["content"] else [3, 3]
        return [4, 2] if shown[0] in {p.better for p in PAIRS} else [2, 4]

    report = _run([_spec("good"), _spec("broken")], rate)
    assert report["good"]["accuracy"] == 1.0
    broken = report["broken"]
    assert broken["parse_rate"] == pytest.approx(4 / 6, abs=1e-4) and broken["tie_rate"] == 1.0
    assert broken["accuracy"] == 0.0 and broken["first_position_win_rate"] is None
    panel = report[PANEL]
    assert panel["parse_rate"] == 1.0, "the panel reads a pair when one judge could"
    assert panel["accuracy"] == 1.0, "mean of (4, 2) and (3, 3) still puts the better answer first"


def test_a_failure_is_kept_on_the_presentation() -> None:
    panel = calibration_panel([_spec("j")])
    outcomes = judge_all(plan_tasks(grouped_rows(PAIRS[:1]), panel), _judge(lambda call, shown: None))
    shown = presentations(PAIRS[:1], outcomes, ["j"])
    assert len(shown) == 4 and {p.judge for p in shown} == {"j", PANEL}
    assert all(p.verdict is None and p.failure for p in shown)
    assert shown[0].failure.startswith("judge_unparseable")


def test_bad_rows_are_named_and_left_out() -> None:
    rows = [
        ("f:1", {"prompt": "Q", "better": "A", "worse": "B", "flaw": "verbosity", "topic": "t"}),
        ("f:2", {"prompt": "Q", "better": "", "worse": "B"}),
        ("f:3", {"prompt": "Q", "better": "same", "worse": "same "}),
        ("f:4", {"prompt": "Q", "better": 5, "worse": "B"}),
        ("f:5", {"prompt": "Q2", "better": "A", "worse": "B", "id": "pair-001"}),
    ]
    pairs, problems = parse_pairs(rows)
    assert [p.pair_id for p in pairs] == ["pair-001"] and pairs[0].flaw == "verbosity"
    assert [p.split(":")[0] + ":" + p.split(":")[1] for p in problems] == ["f:2", "f:3", "f:4", "f:5"]
    assert "better missing" in problems[0] and "same text" in problems[1] and "repeats" in problems[3]


FLAWS = ("wrong_facts", "ignored_instructions", "unsafe_advice", "verbosity", "refusal")


def test_the_shipped_set_has_at_least_60_pairs_over_every_kind_of_flaw() -> None:
    pairs, problems = read_calibration_pairs(None)
    assert problems == [] and len(pairs) >= 60
    flaws = Counter(p.flaw for p in pairs)
    assert set(flaws) == set(FLAWS) and min(flaws.values()) >= 10
    assert len({p.topic for p in pairs}) >= 10
    assert len({p.prompt for p in pairs}) == len(pairs)
    assert len(read_calibration_pairs(None, limit=5)[0]) == 5
