"""Group per-model generations into one row per prompt, aligned by row id and model order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pref_assets.core import status
from pref_assets.core.ids import join_column

_MISSING = "missing"


def group_generations(
    prompts: Iterable[dict[str, Any]],
    generations: Iterable[dict[str, Any]],
    models: Sequence[str],
) -> list[dict[str, Any]]:
    """Return one row per prompt with ``generations`` aligned to ``models``.

    A prompt that failed upstream passes through failed. An answer that failed or is missing
    keeps its slot (text None, its status and reason), so the lists never shift. Generations are matched to
    prompts by ``row_id`` (by prompt id for rows stored before row ids existed).
    """
    prompts, generations = list(prompts), list(generations)
    column = join_column(prompts, generations)
    known = {p[column] for p in prompts if p["status"] == status.OK}
    by_key = _index_generations(generations, known, models, column)
    return [_group_one(p, by_key, models, column) for p in prompts]


def _index_generations(
    generations: Iterable[dict[str, Any]], known: set[str], models: Sequence[str], column: str
) -> dict[tuple[str, str], dict[str, Any]]:
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for g in generations:
        if g["model"] is None:
            continue
        key = (g[column], g["model"])
        if g[column] not in known or g["model"] not in models:
            raise ValueError(f"generation for unknown prompt or model: {key}")
        if key in index:
            raise ValueError(f"two generations for one prompt and model: {key}")
        index[key] = g
    return index


def _group_one(
    prompt: dict[str, Any], by_key: dict[tuple[str, str], dict[str, Any]], models: Sequence[str], column: str
) -> dict[str, Any]:
    row = {k: prompt[k] for k in ("row_id", "prompt_id", "instruction", "topic", "system_prompt", "messages")
           if k in prompt}  # fmt: skip
    if prompt["status"] != status.OK:
        blank = [None] * len(models)
        return row | {
            "generation_models": list(models),
            "generations": blank,
            "generation_status": [prompt["status"]] * len(models),
            "generation_reasons": blank,
            **{k: prompt[k] for k in ("status", "failed_stage", "reason")},
        }
    slots = [by_key.get((prompt[column], m)) for m in models]
    row |= {
        "generation_models": list(models),
        "generations": [s["generation"] if s and s["status"] == status.OK else None for s in slots],
        "generation_status": [s["status"] if s else _MISSING for s in slots],
        "generation_reasons": [s["reason"] if s else "no generation row" for s in slots],
    }
    return row | _group_status(row)


def _group_status(row: dict[str, Any]) -> dict[str, Any]:
    if any(s == status.OK for s in row["generation_status"]):
        return status.ok()
    detail = "; ".join(f"{m}: {r}" for m, r in zip(row["generation_models"], row["generation_reasons"], strict=True))
    return status.failure(status.STAGE_GENERATIONS, f"no_answer: {detail}")
