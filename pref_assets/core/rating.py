"""Rating step: one judge call per (prompt, aspect), bounded re-asks, verdicts mapped to model order.

A prompt with fewer than two answers cannot make a pair: it is not judged (``skipped``, ``fewer_than_two_answers``)
unless the judge is set to rate single answers. An unreadable judgement is re-asked with a new seed; a cut-off one
with twice the room (up to ``REASK_MAX_TOKENS``). What is stored of a judgement is bounded (``clip``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pref_assets.core import status
from pref_assets.core.calls import Call, response_format
from pref_assets.core.conversation import judged_prompt
from pref_assets.core.generation import Result
from pref_assets.core.judge import (
    RATIONALE_KEPT_BYTES,
    RAW_TEXT_KEPT_BYTES,
    REASON_KEPT_BYTES,
    TRUNCATED,
    UNPARSEABLE,
    JudgeParseError,
    Verdict,
    clip,
    judge_messages,
    judge_schema,
    parse_verdicts,
    presentation_order,
)
from pref_assets.core.rows import GroupedRow, Judgement, RatingRow, extend_row, failed, skipped
from pref_assets.core.rubric import Aspect, get_aspect
from pref_assets.core.scoring import combine_scores, map_back

REQUEST_FAILED = "judge_request_failed"
TOO_FEW_ANSWERS = "fewer_than_two_answers"
REASK_MAX_TOKENS = 8192
_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """The judge model, its endpoint's structured-output flavour, aspects and re-ask budget."""

    name: str
    endpoint: str
    model: str
    params: tuple[tuple[str, Any], ...]
    aspects: tuple[str, ...]
    flavour: str
    shuffle: bool = True
    max_reasks: int = 1
    position_swap: bool = False
    rate_single_answers: bool = False


@dataclass(frozen=True, slots=True)
class Task:
    """One judge call to make: which prompt, which aspect, which answers in which order."""

    prompt_id: str
    aspect: Aspect
    shown: tuple[int, ...]
    call: Call
    pass_index: int = 0
    answers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """A judged task: verdicts in shown order, or a failure reason; the raw text either way."""

    task: Task
    verdicts: tuple[Verdict, ...] | None
    reason: str | None
    raw_text: str | None
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


Runner = Callable[[Sequence[Call]], Sequence[Result]]


def plan_tasks(rows: Sequence[GroupedRow], judge: JudgeSpec) -> list[Task]:
    """Return the judge tasks for every ok row and aspect (twice, in reversed order, with position swap); a row
    with fewer than two answers gets none unless ``judge.rate_single_answers``."""
    passes = (0, 1) if judge.position_swap else (0,)
    return [
        _task(row, get_aspect(a), judge, p)
        for row in rows
        if row.ok and (judge.rate_single_answers or _answered(row) >= 2)
        for a in judge.aspects
        for p in passes
    ]


def _answered(row: GroupedRow) -> int:
    return sum(text is not None for text in row.generations or ())


def _task(row: GroupedRow, aspect: Aspect, judge: JudgeSpec, pass_index: int) -> Task:
    answered = [i for i, text in enumerate(row.generations or ()) if text is not None]
    order = presentation_order(row.prompt_id, len(answered)) if judge.shuffle else range(len(answered))
    shown = tuple(answered[k] for k in order)
    if pass_index == 1:
        shown = shown[::-1]
    answers = tuple(row.generations[i] for i in shown)
    messages = judge_messages(judged_prompt(row.instruction, row.system_prompt, row.messages), answers, aspect)
    fmt = response_format(judge_schema(len(shown), aspect), judge.flavour)
    call = Call(judge.endpoint, judge.model, tuple(messages), judge.params, fmt)
    return Task(row.prompt_id, aspect, shown, call, pass_index, answers)


def judge_all(tasks: Sequence[Task], run: Runner, max_reasks: int) -> list[Outcome]:
    """Run every task; re-ask unparseable and cut-off answers up to ``max_reasks`` times with a new seed, a
    cut-off one also with twice its ``max_tokens`` (at most ``REASK_MAX_TOKENS``, never less than it had)."""
    calls = [t.call for t in tasks]
    outcomes = [_outcome(t, r, 1, t.call) for t, r in zip(tasks, run(calls), strict=True)]
    for attempt in range(2, max_reasks + 2):
        retry = [i for i, o in enumerate(outcomes) if _worth_reasking(o)]
        if not retry:
            break
        for i in retry:
            more_room = _kind(outcomes[i].reason) == TRUNCATED
            calls[i] = _reask(tasks[i].call, calls[i], attempt, more_room=more_room)
        for i, result in zip(retry, run([calls[i] for i in retry]), strict=True):
            outcomes[i] = _merge(outcomes[i], _outcome(outcomes[i].task, result, attempt, calls[i]))
    return outcomes


def _worth_reasking(outcome: Outcome) -> bool:
    return _kind(outcome.reason) in (UNPARSEABLE, TRUNCATED)


def _kind(reason: str | None) -> str | None:
    return None if reason is None else reason.split(":", 1)[0]


def _reask(first: Call, last: Call, attempt: int, *, more_room: bool) -> Call:
    """Return the call re-asking ``first`` at ``attempt``: a seed of its own, and with ``more_room`` twice the
    token limit ``last`` had."""
    params = dict(last.params)
    params["seed"] = int(dict(first.params).get("seed") or 0) + 1000 * attempt
    if more_room:
        for name in _TOKEN_LIMITS:
            if isinstance(params.get(name), int):
                params[name] = max(params[name], min(2 * params[name], REASK_MAX_TOKENS))
    return replace(last, params=tuple(params.items()))


def _merge(before: Outcome, after: Outcome) -> Outcome:
    tokens = {
        "prompt_tokens": before.prompt_tokens + after.prompt_tokens,
        "completion_tokens": before.completion_tokens + after.completion_tokens,
    }
    if after.reason is not None and after.reason.startswith(REQUEST_FAILED):
        # A re-ask that got no answer says nothing new: the unreadable answer and its raw text stay the finding.
        reason = f"{before.reason}; re-ask {after.attempts} got no answer: {after.reason}"
        return replace(before, reason=reason, attempts=after.attempts, **tokens)
    return replace(after, **tokens)


def _outcome(task: Task, result: Result, attempt: int, call: Call) -> Outcome:
    verdicts, reason = None, None
    if result.finish_reason == "length":
        limits = [f"{name} {value}" for name, value in call.params if name in _TOKEN_LIMITS and value is not None]
        reason = f"{TRUNCATED}: the judge answer hit max_tokens" + (f" ({', '.join(limits)})" if limits else "")
    elif result.error_kind is not None:
        reason = f"{REQUEST_FAILED}: {result.error_kind}: {result.error}"
    else:
        try:
            verdicts = tuple(parse_verdicts(result.text or "", len(task.shown), task.aspect, answers=task.answers))
        except JudgeParseError as err:
            reason = str(err)
    tokens = (result.prompt_tokens, result.completion_tokens)
    return Outcome(task, verdicts, reason, result.text, attempt, *tokens, cached=result.cached)


def rating_rows(rows: Sequence[GroupedRow], outcomes: Sequence[Outcome], judge: JudgeSpec) -> list[RatingRow]:
    """Return one row per grouped row: its judgements per aspect, combined scores, and status."""
    by_prompt: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_prompt.setdefault(outcome.task.prompt_id, []).append(outcome)
    # A prompt id has at most one ok row in a batch (a repeat is a failed row), so only ok rows take judgements.
    return [_rating_row(row, by_prompt.get(row.prompt_id, []) if row.ok else [], judge) for row in rows]


def _rating_row(row: GroupedRow, outcomes: list[Outcome], judge: JudgeSpec) -> RatingRow:
    n = len(row.generation_models)
    judgements = [_judgement(o, n) for o in outcomes]
    rated = extend_row(row, RatingRow, judge_model=judge.name, judgements=judgements, scores=[None] * n)
    if not row.ok:
        return rated
    if not outcomes and _answered(row) < 2 and not judge.rate_single_answers:
        return skipped(rated, status.STAGE_RATINGS, TOO_FEW_ANSWERS)
    unread = [o for o in outcomes if o.verdicts is None]
    if unread:
        kind = str(unread[0].reason).split(":")[0]
        detail = kind + ": " + "; ".join(f"[{_label(o.task)}] {o.reason}" for o in unread)
        return failed(rated, status.STAGE_RATINGS, clip(detail, REASON_KEPT_BYTES))
    by_aspect = {(j.aspect, j.pass_index): j.ratings for j in judgements}
    return replace(rated, scores=combine_scores(by_aspect, n), **status.ok())


def _judgement(o: Outcome, n: int) -> Judgement:
    mapped = map_back(o.verdicts, o.task.shown, n) if o.verdicts else [None] * n
    return Judgement(
        aspect=o.task.aspect.name,
        pass_index=o.task.pass_index,
        ratings=[v.rating if v else None for v in mapped],
        rationales=[clip(v.rationale, RATIONALE_KEPT_BYTES) if v else None for v in mapped],
        error_kinds=[v.error_kind if v else None for v in mapped],
        shown_order=list(o.task.shown),
        raw_text=clip(o.raw_text, RAW_TEXT_KEPT_BYTES),
        failure=clip(o.reason, REASON_KEPT_BYTES),
        attempts=o.attempts,
        cached=o.cached,
        prompt_tokens=o.prompt_tokens,
        completion_tokens=o.completion_tokens,
    )


def _label(task: Task) -> str:
    return task.aspect.name + (" reversed" if task.pass_index else "")
