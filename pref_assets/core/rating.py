"""Rating step: one judge call per (prompt, judge, aspect, pass, part), bounded re-asks, verdicts mapped back to the
answer slots.

A prompt with fewer than two answers cannot make a pair: it is not judged (``skipped``, ``fewer_than_two_answers``)
unless the judge is set to rate single answers. An unreadable judgement is re-asked with a new seed; a cut-off one
with twice the room (up to ``REASK_MAX_TOKENS``). What is stored of a judgement is bounded (``clip``).

Several answers per call, split when over: a judge shows at most ``max_answers_per_call`` answers in one call. More
are cut into parts: the first part holds the first answers of the (shuffled) order, every later part the first
answer of the first part again (the anchor) and the next ones. Ratings are absolute rubric scores, read the same
whatever else a call shows, so the parts' ratings are compared as they are; each answer's score is the mean of all
its ratings (the anchor's over every part), and how far the anchor's ratings drift between parts is reported.

A panel: every judge rates every answer. A judge counts for a row only when every one of its calls for the row was
read (its ratings then cover every answer); a row is rated by the judges that count, each failed judge named with
its reason in ``judge_failures``, and fails when fewer than ``min_judges`` count. An answer's score is the mean
over the counted judges of each judge's mean rating (over aspects, passes and parts).
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
from pref_assets.core.panel import panel_scores
from pref_assets.core.rows import GroupedRow, Judgement, RatingRow, extend_row, failed, skipped
from pref_assets.core.rubric import Aspect, get_aspect
from pref_assets.core.scoring import combine_scores, map_back

REQUEST_FAILED = "judge_request_failed"
TOO_FEW_ANSWERS = "fewer_than_two_answers"
TOO_FEW_JUDGES = "fewer_than_min_judges"
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
    max_answers_per_call: int = 8


@dataclass(frozen=True, slots=True)
class Task:
    """One judge call to make: which prompt, judge and aspect, which answers in which order."""

    prompt_id: str
    aspect: Aspect
    shown: tuple[int, ...]
    call: Call
    pass_index: int = 0
    answers: tuple[str, ...] = ()
    judge: str = ""
    part: int = 0
    max_reasks: int = 1


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
Panel = JudgeSpec | Sequence[JudgeSpec]


def panel_of(judges: Panel) -> tuple[JudgeSpec, ...]:
    """Return ``judges`` as a panel: one judge is a panel of one."""
    return (judges,) if isinstance(judges, JudgeSpec) else tuple(judges)


def plan_tasks(rows: Sequence[GroupedRow], judges: Panel) -> list[Task]:
    """Return the judge tasks for every ok row, judge, aspect (twice, in reversed order, with position swap) and
    part of the answers; a row with fewer than two answers gets none from a judge without ``rate_single_answers``."""
    return [
        task
        for row in rows
        if row.ok
        for judge in panel_of(judges)
        if judge.rate_single_answers or _answered(row) >= 2
        for a in judge.aspects
        for p in ((0, 1) if judge.position_swap else (0,))
        for task in _tasks(row, get_aspect(a), judge, p)
    ]


def _answered(row: GroupedRow) -> int:
    return sum(text is not None for text in row.generations or ())


def split_shown(shown: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """Return ``shown`` cut into parts of at most ``size`` answers: the first ``size``, then the first answer (the
    anchor) with the next ``size - 1``, and so on, so every part shares the anchor with the first."""
    if len(shown) <= size:
        return [tuple(shown)]
    parts, anchor = [tuple(shown[:size])], shown[0]
    rest = shown[size:]
    parts += [(anchor, *rest[i : i + size - 1]) for i in range(0, len(rest), size - 1)]
    return parts


def _tasks(row: GroupedRow, aspect: Aspect, judge: JudgeSpec, pass_index: int) -> list[Task]:
    answered = [i for i, text in enumerate(row.generations or ()) if text is not None]
    order = presentation_order(row.prompt_id, len(answered)) if judge.shuffle else range(len(answered))
    parts = split_shown([answered[k] for k in order], judge.max_answers_per_call)
    tasks = []
    for number, part in enumerate(parts):
        if number and judge.shuffle:
            # the anchor moves within later parts, so it is not always shown first
            part = tuple(part[k] for k in presentation_order(f"{row.prompt_id}/part-{number}", len(part)))
        shown = part[::-1] if pass_index == 1 else part
        tasks.append(_task(row, aspect, judge, pass_index, number, shown))
    return tasks


def _task(
    row: GroupedRow, aspect: Aspect, judge: JudgeSpec, pass_index: int, part: int, shown: tuple[int, ...]
) -> Task:
    answers = tuple(row.generations[i] for i in shown)
    messages = judge_messages(judged_prompt(row.instruction, row.system_prompt, row.messages), answers, aspect)
    fmt = response_format(judge_schema(len(shown), aspect), judge.flavour)
    call = Call(judge.endpoint, judge.model, tuple(messages), judge.params, fmt)
    return Task(row.prompt_id, aspect, shown, call, pass_index, answers, judge.name, part, judge.max_reasks)


def judge_all(tasks: Sequence[Task], run: Runner) -> list[Outcome]:
    """Run every task; re-ask unparseable and cut-off answers up to each task's ``max_reasks`` times with a new
    seed, a cut-off one also with twice its ``max_tokens`` (at most ``REASK_MAX_TOKENS``, never less than it had)."""
    calls = [t.call for t in tasks]
    outcomes = [_outcome(t, r, 1, t.call) for t, r in zip(tasks, run(calls), strict=True)]
    budgets = [t.max_reasks for t in tasks]
    for attempt in range(2, max(budgets, default=0) + 2):
        retry = [i for i, o in enumerate(outcomes) if _worth_reasking(o) and attempt <= budgets[i] + 1]
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


def rating_rows(
    rows: Sequence[GroupedRow], outcomes: Sequence[Outcome], judges: Panel, min_judges: int = 1
) -> list[RatingRow]:
    """Return one row per grouped row: its judgements per judge and aspect, each counted judge's scores, the
    combined scores, the judges that failed, and status (failed when fewer than ``min_judges`` judges count)."""
    by_prompt: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_prompt.setdefault(outcome.task.prompt_id, []).append(outcome)
    panel = panel_of(judges)
    # A prompt id has at most one ok row in a batch (a repeat is a failed row), so only ok rows take judgements.
    return [_rating_row(row, by_prompt.get(row.prompt_id, []) if row.ok else [], panel, min_judges) for row in rows]


def _rating_row(row: GroupedRow, outcomes: list[Outcome], panel: tuple[JudgeSpec, ...], min_judges: int) -> RatingRow:
    n = len(row.generation_models)
    judgements = [_judgement(o, n) for o in outcomes]
    name = " + ".join(j.name for j in panel)
    rated = extend_row(row, RatingRow, judge_model=name, judgements=judgements, scores=[None] * n)
    if not row.ok:
        return rated
    if not outcomes and _answered(row) < 2 and not any(j.rate_single_answers for j in panel):
        return skipped(rated, status.STAGE_RATINGS, TOO_FEW_ANSWERS)
    counted, scores, failures, unread = [], [], [], []
    for judge in panel:
        mine = [o for o in outcomes if o.task.judge == judge.name]
        bad = [o for o in mine if o.verdicts is None]
        if bad:
            unread += bad
            failures.append(clip(f"{judge.name}: {_failure(bad, len(panel))}", REASON_KEPT_BYTES))
        elif mine:
            counted.append(judge.name)
            by_call = {(j.aspect, j.pass_index, j.part): j.ratings for j in judgements if j.judge == judge.name}
            scores.append(combine_scores(by_call, n))
    rated = replace(rated, judges=counted, judge_scores=scores, judge_failures=failures)
    if len(counted) < min_judges:
        unplanned = [j.name for j in panel if not any(o.task.judge == j.name for o in outcomes)]
        reason = _too_few(unread, unplanned, len(counted), min_judges, len(panel))
        return failed(rated, status.STAGE_RATINGS, clip(reason, REASON_KEPT_BYTES))
    return replace(rated, scores=panel_scores(scores, n), **status.ok())


def _failure(unread: list[Outcome], panel_size: int) -> str:
    kind = str(unread[0].reason).split(":")[0]
    return kind + ": " + "; ".join(f"[{_label(o.task, panel_size)}] {o.reason}" for o in unread)


def _too_few(unread: list[Outcome], unplanned: list[str], counted: int, min_judges: int, panel_size: int) -> str:
    """Return why a row has fewer than ``min_judges`` judges: the unreadable judgements first (their kind leads),
    then the judges that did not rate it at all (one answer, and ``rate_single_answers`` off)."""
    parts = [_failure(unread, panel_size)] if unread else [f"{TOO_FEW_JUDGES}: {counted} of {min_judges}"]
    if unplanned:
        parts.append(f"not rated by {', '.join(unplanned)} (fewer than two answers; rate_single_answers is off)")
    return "; ".join(parts)


def _judgement(o: Outcome, n: int) -> Judgement:
    mapped = map_back(o.verdicts, o.task.shown, n) if o.verdicts else [None] * n
    return Judgement(
        judge=o.task.judge,
        aspect=o.task.aspect.name,
        pass_index=o.task.pass_index,
        part=o.task.part,
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


def _label(task: Task, panel_size: int = 1) -> str:
    judge = f"{task.judge} " if panel_size > 1 else ""
    part = f" part {task.part + 1}" if task.part else ""
    return judge + task.aspect.name + (" reversed" if task.pass_index else "") + part
