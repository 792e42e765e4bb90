"""Argilla records for human review, built from rated prompts (question names, not server ids)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pref_assets.core.ids import record_uuid
from pref_assets.core.rows import RatingRow, RecordRow, next_row

MARGIN = "judge_margin"


def field_name(slot: int) -> str:
    """Return the field holding the answer in 0-based model ``slot``."""
    return f"response_{slot + 1}"


def rating_question(slot: int) -> str:
    """Return the rating question for the answer in 0-based model ``slot``."""
    return f"rating_{slot + 1}"


def record_rows(rows: Sequence[RatingRow], *, dataset: str, batch: str) -> list[RecordRow]:
    """Return the record row of each rated row: the record as JSON for an ok row, the status carried otherwise."""
    return [_record_row(row, dataset=dataset, batch=batch) if row.ok else next_row(row, RecordRow) for row in rows]


def build_record(row: RatingRow, *, dataset: str, batch: str) -> dict[str, Any]:
    """Return one record: instruction and answers as fields, judge scores as suggestions."""
    models, answers, scores = row.generation_models, row.generations, row.scores
    fields = {"instruction": row.instruction}
    fields |= {field_name(i): a for i, a in enumerate(answers) if a is not None}
    suggestions = [
        {"question_name": rating_question(i), "value": round(s), "agent": row.judge_model, "type": "model"}
        for i, s in enumerate(scores)
        if s is not None
    ]
    metadata = {"topic": row.topic or "unknown", "batch": batch, "models": ",".join(models)}
    metadata |= {f"judge_{rating_question(i)}": s for i, s in enumerate(scores) if s is not None}
    metadata |= _margin(scores)
    suggestions += _ranking_suggestion(scores, row.judge_model)
    return {
        "id": record_uuid(dataset, row.prompt_id),
        "external_id": row.prompt_id,
        "fields": fields,
        "suggestions": suggestions,
        "metadata": metadata,
    }


def _record_row(row: RatingRow, *, dataset: str, batch: str) -> RecordRow:
    record = build_record(row, dataset=dataset, batch=batch)
    return next_row(row, RecordRow, record_id=record["id"], record=json.dumps(record, ensure_ascii=False))


def _margin(scores: Sequence[float | None]) -> dict[str, float]:
    rated = [s for s in scores if s is not None]
    return {MARGIN: max(rated) - min(rated)} if len(rated) >= 2 else {}


def _ranking_suggestion(scores: Sequence[float | None], agent: str | None) -> list[dict[str, Any]]:
    rated = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: -scores[i])
    if len(rated) < 2:
        return []
    ranks = [{"value": field_name(i), "rank": 1 + sorted({-s for s in scores if s is not None}).index(-scores[i])}
             for i in rated]  # fmt: skip
    return [{"question_name": "ranking", "value": ranks, "agent": agent, "type": "model"}]


GUIDELINES = """Each record shows one instruction and the answers of several models.
Rate every answer from 1 (poor) to 5 (excellent): is it correct, honest about what it does not know,
faithful to the instruction, and free of invented content? Then rank the answers, best first.
The judge model's ratings are shown as suggestions; change them wherever you disagree.
Leave a comment when an answer is harmful, or when none of the answers is acceptable."""


def dataset_spec(n_answers: int) -> dict[str, list[dict[str, Any]]]:
    """Return the fields, questions and metadata properties of a review dataset for ``n_answers``."""
    names = [field_name(i) for i in range(n_answers)]
    fields = [_text_field("instruction", "Instruction", required=True)]
    fields += [_text_field(n, f"Answer {i + 1}", required=False) for i, n in enumerate(names)]
    questions = [_rating_question(i) for i in range(n_answers)]
    questions.append(_question("ranking", "Rank the answers, best first", True, {
        "type": "ranking", "options": [{"value": n, "text": f"Answer {i + 1}"} for i, n in enumerate(names)],
    }))  # fmt: skip
    questions.append(_question("comment", "Comment (optional)", False, {"type": "text", "use_markdown": False}))
    metadata = [_terms(n) for n in ("topic", "batch", "models")]
    metadata += [{"name": f"judge_{rating_question(i)}", "title": f"Judge rating, answer {i + 1}",
                  "settings": {"type": "float", "min": 1.0, "max": 5.0}} for i in range(n_answers)]  # fmt: skip
    metadata.append({"name": MARGIN, "title": "Judge margin (best - worst)",
                     "settings": {"type": "float", "min": 0.0, "max": 4.0}})  # fmt: skip
    return {"fields": fields, "questions": questions, "metadata_properties": metadata}


def _text_field(name: str, title: str, *, required: bool) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "required": required,
        "settings": {"type": "text", "use_markdown": True},
    }


def _rating_question(slot: int) -> dict[str, Any]:
    options = {"type": "rating", "options": [{"value": v} for v in range(1, 6)]}
    return _question(rating_question(slot), f"Rate answer {slot + 1} (1-5)", True, options)


def _question(name: str, title: str, required: bool, settings: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "title": title, "required": required, "settings": settings}


def _terms(name: str) -> dict[str, Any]:
    return {"name": name, "title": name.capitalize(), "settings": {"type": "terms"}}
