"""The row ledger: every prompt of a batch is accounted for at every stage, ok or with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pref_assets.core import status
from pref_assets.core.ids import join_column


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """What a stage's rows say about the batch's prompts."""

    missing: tuple[str, ...]
    unexplained: int
    failed_here: int
    total: int
    unknown: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Return whether every prompt is present, no row names a prompt outside the batch, and every non-ok row
        has a reason."""
        return not self.missing and not self.unknown and not self.unexplained

    @property
    def failure_rate(self) -> float:
        """Return the share of rows that failed at this stage."""
        return self.failed_here / self.total if self.total else 0.0


def check_ledger(prompts: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], stage: str) -> LedgerCheck:
    """Compare a stage's rows with the batch's prompts by ``row_id`` (unique per prompt row; by prompt id for rows
    stored before row ids existed, where a prompt without text appears with id None): every prompt must appear,
    and no row may name one outside the batch."""
    key = join_column(prompts, rows)
    present = {r[key] for r in rows}
    expected = {p[key] for p in prompts}
    missing = tuple(sorted(str(p[key]) for p in prompts if p[key] not in present))
    unknown = tuple(sorted({str(r[key]) for r in rows if r[key] not in expected}))
    unexplained = sum(1 for r in rows if r["status"] != status.OK and not r.get("reason"))
    failed_here = sum(1 for r in rows if r["status"] == status.FAILED and r.get("failed_stage") == stage)
    return LedgerCheck(missing, unexplained, failed_here, len(rows), unknown)
