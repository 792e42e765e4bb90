"""The row ledger: every prompt of a batch is accounted for at every stage, ok or with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pref_assets.core import status


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """What a stage's rows say about the batch's prompts."""

    missing: tuple[str, ...]
    unexplained: int
    failed_here: int
    total: int

    @property
    def passed(self) -> bool:
        """Return whether every prompt is present and every non-ok row has a reason."""
        return not self.missing and not self.unexplained

    @property
    def failure_rate(self) -> float:
        """Return the share of rows that failed at this stage."""
        return self.failed_here / self.total if self.total else 0.0


def check_ledger(prompts: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], stage: str) -> LedgerCheck:
    """Compare a stage's rows with the batch's prompts: every prompt id must appear (a prompt the source
    gave no id, e.g. a row without an instruction, appears with id None)."""
    present = {r["prompt_id"] for r in rows}
    missing = tuple(sorted(str(p["prompt_id"]) for p in prompts if p["prompt_id"] not in present))
    unexplained = sum(1 for r in rows if r["status"] != status.OK and not r.get("reason"))
    failed_here = sum(1 for r in rows if r["status"] == status.FAILED and r.get("failed_stage") == stage)
    return LedgerCheck(missing, unexplained, failed_here, len(rows))
