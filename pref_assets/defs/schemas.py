"""One polars schema per asset, so every partition's Parquet file has the same columns and types."""

from __future__ import annotations

import polars as pl

TEXT = pl.String
MESSAGES = pl.List(pl.Struct({"role": TEXT, "content": TEXT}))
STATUS = {"status": TEXT, "failed_stage": TEXT, "reason": TEXT}

# ``row_id`` is the row's key in every stage (unique, joins one to one); ``prompt_id`` the hash of its text.
PROMPT = {
    "row_id": TEXT, "prompt_id": TEXT, "instruction": TEXT, "topic": TEXT, "system_prompt": TEXT, "messages": MESSAGES,
}  # fmt: skip

PROMPTS = pl.Schema(PROMPT | {"source_ref": TEXT, "duplicate_of": TEXT} | STATUS)

GENERATIONS = pl.Schema(
    {
        "row_id": TEXT,
        "prompt_id": TEXT,
        "model": TEXT,
        "generation": TEXT,
        "finish_reason": TEXT,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "latency_s": pl.Float64,
        "attempts": pl.Int64,
        "cached": pl.Boolean,
        "truncated": pl.Boolean,
    }
    | STATUS
)

GROUPED = pl.Schema(
    PROMPT
    | {
        "generation_models": pl.List(TEXT),
        "generations": pl.List(TEXT),
        "generation_status": pl.List(TEXT),
        "generation_reasons": pl.List(TEXT),
    }
    | STATUS
)

JUDGEMENT = pl.Struct(
    {
        "aspect": TEXT,
        "pass_index": pl.Int64,
        "ratings": pl.List(pl.Int64),
        "rationales": pl.List(TEXT),
        "error_kinds": pl.List(TEXT),
        "shown_order": pl.List(pl.Int64),
        "raw_text": TEXT,
        "failure": TEXT,
        "attempts": pl.Int64,
        "cached": pl.Boolean,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
    }
)

RATINGS = pl.Schema(
    dict(GROUPED) | {"judge_model": TEXT, "judgements": pl.List(JUDGEMENT), "scores": pl.List(pl.Float64)}
)

DPO_PAIRS = pl.Schema(
    {
        "row_id": TEXT,
        "prompt_id": TEXT,
        "prompt": TEXT,
        "chosen": MESSAGES,
        "chosen_model": TEXT,
        "chosen_rating": pl.Float64,
        "rejected": MESSAGES,
        "rejected_model": TEXT,
        "rejected_rating": pl.Float64,
        "margin": pl.Float64,
    }
    | STATUS
)

ARGILLA_RECORDS = pl.Schema(
    {"row_id": TEXT, "prompt_id": TEXT, "record_id": TEXT, "record": TEXT, "pushed": pl.Boolean, "push_error": TEXT}
    | STATUS
)


def frame(rows: list[dict], schema: pl.Schema) -> pl.DataFrame:
    """Return ``rows`` as a frame with exactly ``schema``'s columns (extra keys are an error)."""
    extra = {k for row in rows for k in row} - set(schema.names())
    if extra:
        raise ValueError(f"rows carry columns not in the schema: {sorted(extra)}")
    return pl.DataFrame(rows, schema=schema)
