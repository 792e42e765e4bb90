"""Group per-model generations into one row per prompt, aligned by row id and model order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

from pref_assets.core import status
from pref_assets.core.ids import join_column
from pref_assets.core.rows import GenerationRow, GroupedRow, PromptRow, StageRow

_MISSING = "missing"

Key = Callable[[StageRow], str | None]


def group_generations(
    prompts: Sequence[PromptRow], generations: Sequence[GenerationRow], models: Sequence[str]
) -> list[GroupedRow]:
    """Return one row per prompt with ``generations`` aligned to ``models``.

    A prompt that failed upstream passes through failed. An answer that failed or is missing
    keeps its slot (text None, its status and reason), so the lists never shift. Generations are matched to
    prompts by ``row_id`` (by prompt id for rows stored before row ids existed).
    """
    key: Key = attrgetter(join_column(prompts, generations))
    known = {key(p) for p in prompts if p.ok}
    by_key = _index_generations(generations, known, models, key)
    return [_group_one(p, by_key, models, key) for p in prompts]


def _index_generations(
    generations: Sequence[GenerationRow], known: set[str | None], models: Sequence[str], key: Key
) -> dict[tuple[str | None, str], GenerationRow]:
    index: dict[tuple[str | None, str], GenerationRow] = {}
    for g in generations:
        if g.model is None:
            continue
        slot = (key(g), g.model)
        if slot[0] not in known or g.model not in models:
            raise ValueError(f"generation for unknown prompt or model: {slot}")
        if slot in index:
            raise ValueError(f"two generations for one prompt and model: {slot}")
        index[slot] = g
    return index


def _group_one(
    prompt: PromptRow, by_key: dict[tuple[str | None, str], GenerationRow], models: Sequence[str], key: Key
) -> GroupedRow:
    if not prompt.ok:
        blank = [None] * len(models)
        return _grouped(prompt, models, blank, [prompt.status] * len(models), blank, prompt.carried())
    slots = [by_key.get((key(prompt), m)) for m in models]
    answers = [s.generation if s and s.ok else None for s in slots]
    statuses = [s.status if s else _MISSING for s in slots]
    reasons = [s.reason if s else "no generation row" for s in slots]
    return _grouped(prompt, models, answers, statuses, reasons, _group_status(models, statuses, reasons))


def _grouped(
    prompt: PromptRow,
    models: Sequence[str],
    answers: list[str | None],
    statuses: list[str | None],
    reasons: list[str | None],
    state: dict[str, str | None],
) -> GroupedRow:
    return GroupedRow(
        row_id=prompt.row_id,
        prompt_id=prompt.prompt_id,
        instruction=prompt.instruction,
        topic=prompt.topic,
        system_prompt=prompt.system_prompt,
        messages=prompt.messages,
        generation_models=list(models),
        generations=answers,
        generation_status=statuses,
        generation_reasons=reasons,
        **state,
    )


def _group_status(
    models: Sequence[str], statuses: list[str | None], reasons: list[str | None]
) -> dict[str, str | None]:
    if status.OK in statuses:
        return status.ok()
    detail = "; ".join(f"{m}: {r}" for m, r in zip(models, reasons, strict=True))
    return status.failure(status.STAGE_GENERATIONS, f"no_answer: {detail}")
