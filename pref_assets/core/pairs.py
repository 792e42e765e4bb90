"""Pair selection and DPO formatting (the text and chat variants TRL reads).

Pairs are chosen among all of a prompt's answers (every candidate of every generator) by their scores, the mean
over the panel's judges; the pair names its candidates, their principles, and the judges that agreed with it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pref_assets.core import status
from pref_assets.core.conversation import Message, prompt_messages
from pref_assets.core.panel import agreeing_judges
from pref_assets.core.rows import GroupedRow, PairRow, RatingRow, next_row, skipped

ALL_TIED = "all_tied"
TOO_FEW = "fewer_than_two_rated_answers"
SMALL_MARGIN = "margin_below_minimum"
IDENTICAL = "identical_answers"
LOWEST = "lowest"
RANDOM_LOWER = "random_lower"


@dataclass(frozen=True, slots=True)
class Pair:
    """Indexes (into the model list) of the chosen and rejected answers."""

    chosen: int
    rejected: int
    margin: float


@dataclass(frozen=True, slots=True)
class NoPair:
    """Why a prompt yields no pair."""

    reason: str


def select_pair(
    scores: Sequence[float | None], *, min_margin: float = 0.0, rejected: str = LOWEST, seed: str = ""
) -> Pair | NoPair:
    """Choose the highest-scored answer; reject the lowest, or a random lower one; None is not eligible.

    Ties break by list order: the first of the best is chosen, the last of the worst rejected, so
    chosen and rejected are always different answers. ``random_lower`` draws, seeded by ``seed``,
    among the answers scored at least ``min_margin`` (and strictly) below the chosen one.
    """
    rated = [(i, s) for i, s in enumerate(scores) if s is not None]
    if len(rated) < 2:
        return NoPair(TOO_FEW)
    best = max(s for _, s in rated)
    worst = min(s for _, s in rated)
    if best == worst:
        return NoPair(ALL_TIED)
    if best - worst < min_margin:
        return NoPair(SMALL_MARGIN)
    chosen = next(i for i, s in rated if s == best)
    if rejected == RANDOM_LOWER:
        lower = [i for i, s in rated if s < best and best - s >= min_margin]
        pick = random.Random(seed).choice(lower)
        return Pair(chosen, pick, best - scores[pick])
    if rejected != LOWEST:
        raise ValueError(f"unknown rejected policy {rejected!r}; use {LOWEST!r} or {RANDOM_LOWER!r}")
    last_worst = [i for i, s in rated if s == worst][-1]
    return Pair(chosen, last_worst, best - worst)


def format_pair(row: GroupedRow, chosen: str, rejected: str) -> PairRow:
    """Return the pair row of ``row``'s prompt with ``prompt``, ``chosen`` and ``rejected`` in the text or chat
    DPO layout.

    Text: ``prompt`` is the instruction; chosen/rejected are [system?, user, assistant].
    Chat (a ``messages`` row): ``prompt`` is the first user turn; chosen/rejected are the whole
    conversation plus the answer.
    """
    context = prompt_messages(row.instruction, row.system_prompt, row.messages)
    prompt = next(m["content"] for m in context if m["role"] == "user")
    return next_row(
        row, PairRow, prompt=prompt, chosen=_with_answer(context, chosen), rejected=_with_answer(context, rejected)
    )


def _with_answer(context: list[Message], answer: str) -> list[Message]:
    return [*context, {"role": "assistant", "content": answer}]


def _distinct_pair(answers: Sequence[str | None], scores: Sequence[float | None], **policy: Any) -> Pair | NoPair:
    """Select a pair whose rejected answer differs from the chosen one: answers identical to the chosen one
    (up to surrounding whitespace) are left out of the rejected candidates."""
    choice = select_pair(scores, **policy)
    if isinstance(choice, NoPair) or _text(answers[choice.chosen]) != _text(answers[choice.rejected]):
        return choice
    same = _text(answers[choice.chosen])
    others = [s if i == choice.chosen or _text(answers[i]) != same else None for i, s in enumerate(scores)]
    again = select_pair(others, **policy)
    return again if isinstance(again, Pair) else NoPair(IDENTICAL)


def _text(answer: str | None) -> str | None:
    return None if answer is None else answer.strip()


def pair_row(row: RatingRow, *, min_margin: float = 0.0, rejected: str = LOWEST) -> PairRow:
    """Return the DPO row of one rated prompt: a pair, or no pair with a status and reason."""
    if not row.ok:
        return next_row(row, PairRow)
    models, answers, scores = row.generation_models, row.generations, row.scores
    choice = _distinct_pair(answers, scores, min_margin=min_margin, rejected=rejected, seed=row.prompt_id)
    if isinstance(choice, NoPair):
        return skipped(next_row(row, PairRow), status.STAGE_PAIRS, choice.reason)
    return replace(
        format_pair(row, answers[choice.chosen], answers[choice.rejected]),
        chosen_model=models[choice.chosen],
        chosen_rating=scores[choice.chosen],
        rejected_model=models[choice.rejected],
        rejected_rating=scores[choice.rejected],
        margin=choice.margin,
        chosen_candidate_id=_at(row.candidate_ids, choice.chosen),
        rejected_candidate_id=_at(row.candidate_ids, choice.rejected),
        chosen_principle=_at(row.generation_principles, choice.chosen),
        rejected_principle=_at(row.generation_principles, choice.rejected),
        agreeing_judges=agreeing_judges(row, choice.chosen, choice.rejected),
    )


def _at(values: Sequence[str | None] | None, index: int) -> str | None:
    """Return ``values[index]``, None for a row stored without that column."""
    return values[index] if values else None
