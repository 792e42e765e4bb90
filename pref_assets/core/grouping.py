"""Group per-candidate generations into one row per prompt, aligned by row id, model order and candidate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter

from pref_assets.core import status
from pref_assets.core.generation import candidate_id
from pref_assets.core.ids import join_column
from pref_assets.core.rows import GenerationRow, GroupedRow, PromptRow, StageRow

_MISSING = "missing"

Key = Callable[[StageRow], str | None]
Slot = tuple[str, int]


def answer_slots(models: Sequence[str], num_generations: Mapping[str, int] | None = None) -> list[Slot]:
    """Return the (generator, candidate) of every answer slot of a prompt: generators in configured order, each
    generator's candidates side by side (``num_generations`` per generator, 1 when not given)."""
    counts = num_generations or {}
    return [(m, k) for m in models for k in range(counts.get(m, 1))]


def group_generations(
    prompts: Sequence[PromptRow],
    generations: Sequence[GenerationRow],
    models: Sequence[str],
    num_generations: Mapping[str, int] | None = None,
) -> list[GroupedRow]:
    """Return one row per prompt with its ``generations`` aligned to ``answer_slots(models, num_generations)``.

    A prompt that failed upstream passes through failed. An answer that failed or is missing
    keeps its slot (text None, its status and reason), so the lists never shift. Generations are matched to
    prompts by ``row_id`` (by prompt id for rows stored before row ids existed).
    """
    slots = answer_slots(models, num_generations)
    key: Key = attrgetter(join_column(prompts, generations))
    known = {key(p) for p in prompts if p.ok}
    by_key = _index_generations(generations, known, set(slots), key)
    return [_group_one(p, by_key, slots, key) for p in prompts]


def _index_generations(
    generations: Sequence[GenerationRow], known: set[str | None], slots: set[Slot], key: Key
) -> dict[tuple[str | None, str, int], GenerationRow]:
    index: dict[tuple[str | None, str, int], GenerationRow] = {}
    for g in generations:
        if g.model is None:
            continue
        slot = (key(g), g.model, g.candidate)
        if slot[0] not in known or slot[1:] not in slots:
            raise ValueError(f"generation for unknown prompt, model or candidate: {slot}")
        if slot in index:
            raise ValueError(f"two generations for one prompt, model and candidate: {slot}")
        index[slot] = g
    return index


def _group_one(
    prompt: PromptRow, by_key: dict[tuple[str | None, str, int], GenerationRow], slots: list[Slot], key: Key
) -> GroupedRow:
    ids = [candidate_id(prompt.row_id, m, k) for m, k in slots]
    if not prompt.ok:
        blank = [None] * len(slots)
        return _grouped(prompt, slots, ids, blank, blank, [prompt.status] * len(slots), blank, prompt.carried())
    found = [by_key.get((key(prompt), m, k)) for m, k in slots]
    answers = [g.generation if g and g.ok else None for g in found]
    principles = [g.principle if g else None for g in found]
    statuses = [g.status if g else _MISSING for g in found]
    reasons = [g.reason if g else "no generation row" for g in found]
    state = _group_status(_labels(slots), statuses, reasons)
    return _grouped(prompt, slots, ids, principles, answers, statuses, reasons, state)


def _grouped(
    prompt: PromptRow,
    slots: list[Slot],
    ids: list[str],
    principles: list[str | None],
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
        generation_models=[m for m, _ in slots],
        candidate_ids=ids,
        generation_principles=principles,
        generations=answers,
        generation_status=statuses,
        generation_reasons=reasons,
        **state,
    )


def _labels(slots: list[Slot]) -> list[str]:
    """Return each slot's name in messages: the generator, with ``#k`` when it has several candidates."""
    several = {m for m, k in slots if k > 0}
    return [f"{m}#{k}" if m in several else m for m, k in slots]


def _group_status(labels: list[str], statuses: list[str | None], reasons: list[str | None]) -> dict[str, str | None]:
    if status.OK in statuses:
        return status.ok()
    detail = "; ".join(f"{m}: {r}" for m, r in zip(labels, reasons, strict=True))
    return status.failure(status.STAGE_GENERATIONS, f"no_answer: {detail}")
