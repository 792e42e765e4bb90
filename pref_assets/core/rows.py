"""One row type per stage: the columns each asset stores, their types and what they mean.

``prompts -> generations_by_model -> grouped -> ratings -> dpo_pairs -> argilla_records`` (and the review assets
``human_feedback -> preference_pairs``) each store one of these per row. Every row carries the same key and
status columns (``StageRow``): ``row_id`` joins stages one to one, ``status`` is ``ok``, ``skipped`` or
``failed`` with ``failed_stage`` and ``reason``. A stage's polars schema and the column schema the Dagster UI
shows are derived from these classes (``pref_assets.defs.schemas``); nothing else lists the columns.

Sequences are whatever a frame gives back (lists); a ``Judgement`` inside a rating row is a dataclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cache
from typing import Any, TypedDict, TypeVar, get_args, get_origin, get_type_hints

from pref_assets.core import status as st

Row = TypeVar("Row", bound="StageRow")


class Message(TypedDict):
    """One chat turn."""

    role: str
    content: str


def col(doc: str, default: Any = None) -> Any:
    """Return a dataclass field with its column description (``doc``) and a default."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRow:
    """The columns every stage's row has: its key, its prompt's id, and its status."""

    row_id: str | None = col("The row's key, `<partition key>#<position>`: unique, joins stages one to one.")
    prompt_id: str | None = col("SHA-256 of the prompt's text (of the whole conversation for chat prompts).")
    status: str = col("ok, skipped (no output, with the reason) or failed (with the stage and the reason).", st.OK)
    failed_stage: str | None = col("The stage where the row failed or was skipped.")
    reason: str | None = col("Why the row failed or was skipped.")

    def carried(self) -> dict[str, str | None]:
        """Return the status columns, to pass a row that did not pass on unchanged."""
        return {"status": self.status, "failed_stage": self.failed_stage, "reason": self.reason}

    @property
    def ok(self) -> bool:
        """Return whether the row passed its stage."""
        return self.status == st.OK


STATUS_COLUMNS = ("status", "failed_stage", "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptRow(StageRow):
    """`prompts`: one source row."""

    instruction: str | None = col("The user turn the models answer (the first one for chat prompts).")
    topic: str | None = col("The source's topic or category, if any.")
    system_prompt: str | None = col("A system prompt given with the instruction, if any.")
    messages: Sequence[Message] | None = col("The whole conversation for chat prompts.")
    source_ref: str | None = col("Where the row comes from: `file:line` or the dataset and row.")
    duplicate_of: str | None = col("For a repeated prompt, the `row_id` of its first occurrence.")


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationRow(StageRow):
    """`generations_by_model`: one answer (candidate) of one generator to one prompt."""

    model: str | None = col("The generator's name.")
    candidate: int = col("Which of the generator's answers to the prompt this is (0-based, < num_generations).", 0)
    candidate_id: str | None = col("The answer's id, `<row_id>/<generator>/<candidate>`: unique and stable.")
    principle: str | None = col("The principle (system prompt) the answer was generated under, if any.")
    generation: str | None = col("The answer text.")
    finish_reason: str | None = col("Why the answer ended: stop, length, ...")
    prompt_tokens: int = col("Prompt tokens billed.", 0)
    completion_tokens: int = col("Completion tokens billed.", 0)
    latency_s: float = col("Seconds from sending to the answer (0 when cached).", 0.0)
    attempts: int = col("HTTP attempts made (0 when cached).", 0)
    cached: bool = col("Whether the answer came from the request cache.", False)
    truncated: bool = col("Whether the answer was cut off at max_tokens.", False)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupedRow(StageRow):
    """`grouped`: one prompt with its answers aligned to the configured model order."""

    instruction: str | None = col("The user turn the models answer.")
    topic: str | None = col("The source's topic or category, if any.")
    system_prompt: str | None = col("A system prompt given with the instruction, if any.")
    messages: Sequence[Message] | None = col("The whole conversation for chat prompts.")
    generation_models: Sequence[str] | None = col("Generator name per answer slot, in the configured order.")
    candidate_ids: Sequence[str] | None = col("Answer (candidate) id per slot: a generator's answers side by side.")
    generation_principles: Sequence[str | None] | None = col("The principle each answer was generated under.")
    generations: Sequence[str | None] | None = col("Answers aligned to generation_models; null where it failed.")
    generation_status: Sequence[str | None] | None = col("Status of each answer slot.")
    generation_reasons: Sequence[str | None] | None = col("Why an answer slot is empty.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """One judge call's verdict on a prompt's answers for one aspect (and pass, and part)."""

    judge: str | None = col("The panel judge who gave it.")
    aspect: str | None = col("The rubric aspect rated.")
    pass_index: int = col("0, or 1 for the position-swapped pass.", 0)
    part: int = col("Which part of the answers (0 unless they were judged in several calls sharing an anchor).", 0)
    ratings: Sequence[int | None] | None = col("Rating per answer slot (1-5); null where not rated.")
    rationales: Sequence[str | None] | None = col("The judge's rationale per answer slot.")
    error_kinds: Sequence[str | None] | None = col("Error types the judge named per answer slot.")
    shown_order: Sequence[int] | None = col("The answer slots in the order the judge saw them.")
    raw_text: str | None = col("The judge's answer as received (cut to a bounded size).")
    failure: str | None = col("Why this judgement could not be read.")
    attempts: int = col("Judge calls made (re-asks included).", 0)
    cached: bool = col("Whether the answer came from the request cache.", False)
    prompt_tokens: int = col("Prompt tokens billed.", 0)
    completion_tokens: int = col("Completion tokens billed.", 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingRow(GroupedRow):
    """`ratings`: a grouped prompt with the judge's verdicts and each answer's score."""

    judge_model: str | None = col("The judge's name (the panel's names joined by ' + ').")
    judgements: Sequence[Judgement] | None = col("One verdict per judge, aspect, pass and part.")
    judges: Sequence[str] | None = col("The panel judges whose verdicts count for this row.")
    judge_scores: Sequence[Sequence[float | None]] | None = col("Per counted judge, its score per answer slot.")
    judge_failures: Sequence[str] | None = col("Panel judges that could not rate this row, each with the reason.")
    scores: Sequence[float | None] | None = col("Per answer slot, the mean over judges of each judge's mean rating.")


@dataclass(frozen=True, slots=True, kw_only=True)
class PairRow(StageRow):
    """`dpo_pairs`: the chosen and rejected answers of one prompt (FormatTextGenerationDPO layout)."""

    prompt: str | None = col("The instruction (the first user turn for chat prompts).")
    chosen: Sequence[Message] | None = col("The conversation ending in the chosen answer.")
    chosen_model: str | None = col("The generator of the chosen answer.")
    chosen_rating: float | None = col("The chosen answer's score.")
    rejected: Sequence[Message] | None = col("The conversation ending in the rejected answer.")
    rejected_model: str | None = col("The generator of the rejected answer.")
    rejected_rating: float | None = col("The rejected answer's score.")
    margin: float | None = col("Chosen score minus rejected score (rank gap for ranking-only human labels).")
    chosen_candidate_id: str | None = col("The chosen answer's candidate id.")
    rejected_candidate_id: str | None = col("The rejected answer's candidate id.")
    chosen_principle: str | None = col("The principle the chosen answer was generated under, if any.")
    rejected_principle: str | None = col("The principle the rejected answer was generated under, if any.")
    agreeing_judges: Sequence[str] | None = col("Panel judges whose own scores put chosen above rejected.")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow(StageRow):
    """`argilla_records`: one prompt's review record."""

    record_id: str | None = col("The Argilla record id, stable from the prompt id.")
    record: str | None = col("The record as JSON: fields, suggestions, metadata.")
    pushed: bool = col("Whether the record reached Argilla.", False)
    push_error: str | None = col("Why Argilla refused the record.")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackRow(StageRow):
    """`human_feedback`: what reviewers said about one prompt's answers."""

    record_id: str | None = col("The record's external id.")
    argilla_record_id: str | None = col("The record's id in Argilla.")
    human_ratings: Sequence[float | None] | None = col("Mean human rating per answer slot.")
    rating_counts: Sequence[int] | None = col("How many people rated each answer slot.")
    human_ranking: Sequence[float | None] | None = col("Mean rank per answer slot (1 = best).")
    ranking_count: int = col("How many people ranked the answers.", 0)
    submitted: int = col("Submitted responses.", 0)
    comments: Sequence[str] | None = col("Reviewers' comments.")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreferenceRow(PairRow):
    """`preference_pairs`: the final pair, decided by people where they labelled, by the judge elsewhere."""

    pair_source: str | None = col("Who decided the pair: human or judge.")


def column_names(cls: type) -> tuple[str, ...]:
    """Return a row type's columns in stored order: key columns, the stage's own, then the status columns."""
    names = [f.name for f in fields(cls)]
    own = [n for n in names if n not in STATUS_COLUMNS]
    return (*own, *STATUS_COLUMNS) if issubclass(cls, StageRow) else tuple(names)


def column_docs(cls: type) -> dict[str, str]:
    """Return each column's description."""
    return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


@cache
def column_types(cls: type) -> dict[str, Any]:
    """Return each column's type annotation, resolved."""
    return get_type_hints(cls)


def to_dict(row: Any) -> dict[str, Any]:
    """Return a row as a dict of its columns (a nested dataclass as a dict), in stored order."""
    return {name: _plain(getattr(row, name)) for name in column_names(type(row))}


def column_values(rows: Sequence[Any], cls: type, name: str) -> list[Any]:
    """Return column ``name`` of ``rows`` (of type ``cls``) as stored, nested dataclasses as dicts: what a frame is
    built from column by column."""
    values = [getattr(row, name) for row in rows]
    return [_plain(v) for v in values] if name in _nested_fields(cls) else values


def from_dict(cls: type[Row], values: Mapping[str, Any]) -> Row:
    """Return the row of type ``cls`` holding ``values`` (unknown keys are an error; missing ones default)."""
    nested = _nested_fields(cls)
    kwargs = {k: _nest(nested[k], v) if k in nested and v is not None else v for k, v in values.items()}
    return cls(**kwargs)


def replace_status(row: Row, **status_columns: str | None) -> Row:
    """Return ``row`` with other status columns (``status``, ``failed_stage``, ``reason``)."""
    return replace(row, **status_columns)


def failed(row: Row, stage: str, reason: str) -> Row:
    """Return ``row`` failed at ``stage`` for ``reason``."""
    return replace_status(row, **st.failure(stage, reason))


def skipped(row: Row, stage: str, reason: str) -> Row:
    """Return ``row`` skipped at ``stage`` for ``reason`` (no output, nothing wrong)."""
    return replace_status(row, status=st.SKIPPED, failed_stage=stage, reason=reason)


def next_row(upstream: StageRow, cls: type[Row], **columns: Any) -> Row:
    """Return the ``cls`` row of ``upstream``'s prompt: its key columns, its status when it did not pass, and
    ``columns``; every other column takes its default."""
    carried = {} if upstream.ok else upstream.carried()
    return cls(row_id=upstream.row_id, prompt_id=upstream.prompt_id, **(carried | columns))


def extend_row(row: StageRow, cls: type[Row], **columns: Any) -> Row:
    """Return ``row`` as a row of ``cls``, a row type with all of ``row``'s columns and more, with ``columns`` set."""
    return cls(**({name: getattr(row, name) for name in _field_names(type(row))} | columns))


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, list | tuple) and value and is_dataclass(value[0]):
        return [_plain(v) for v in value]
    return value


@cache
def _nested_fields(cls: type) -> dict[str, type]:
    """Return the fields holding sequences of a dataclass type, and that type."""
    out = {}
    for name, hint in column_types(cls).items():
        inner = _sequence_item(hint)
        if inner is not None and is_dataclass(inner):
            out[name] = inner
    return out


def _nest(item_type: type, values: Sequence[Any]) -> list[Any]:
    return [v if isinstance(v, item_type) else item_type(**v) for v in values]


def _sequence_item(hint: Any) -> Any:
    """Return X for ``Sequence[X]`` or ``Sequence[X] | None``; None for anything else."""
    for candidate in (hint, *get_args(hint)):
        if get_origin(candidate) is Sequence or getattr(get_origin(candidate), "__name__", "") == "Sequence":
            return get_args(candidate)[0]
    return None

