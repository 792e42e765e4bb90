"""Row status vocabulary shared by every stage: a row is ok, or failed with a stage and a reason."""

from __future__ import annotations

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"

STAGE_PROMPTS = "prompts"
STAGE_GENERATIONS = "generations_by_model"
STAGE_GROUPED = "grouped"
STAGE_RATINGS = "ratings"
STAGE_PAIRS = "dpo_pairs"
STAGE_ARGILLA = "argilla_records"


def failure(stage: str, reason: str) -> dict[str, str]:
    """Return the status columns of a row that failed at ``stage``."""
    return {"status": FAILED, "failed_stage": stage, "reason": reason}


def ok() -> dict[str, str | None]:
    """Return the status columns of a row that passed."""
    return {"status": OK, "failed_stage": None, "reason": None}
