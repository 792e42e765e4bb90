"""`dpo_pairs`: the chosen and rejected answer of each rated prompt."""

from collections import Counter
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.core.pairs import pair_row
from pref_assets.core.quality import pair_report
from pref_assets.core.rows import PairRow, RatingRow
from pref_assets.defs import schemas
from pref_assets.defs.checks import TIES, batch_rows, ledger_result, rate_result, warning_spec
from pref_assets.defs.metadata import report_metadata
from pref_assets.defs.stages.common import (
    CODE_VERSION,
    BatchOutput,
    Stage,
    StepEvents,
    batch_inputs,
    materialize,
    result,
)

STAGE = "dpo_pairs"


def build_pairs(stage: Stage) -> dg.AssetsDefinition:
    """Return the `dpo_pairs` asset."""
    policy, quality = stage.settings.pairs, stage.settings.quality
    max_rate = stage.settings.max_failure_rate
    checks = [stage.ledger(STAGE), warning_spec(TIES, stage.partitions, quality.max_tie_rate)]

    @dg.asset(description="Chosen/rejected pairs in the FormatTextGenerationDPO layout TRL reads.",
              code_version=CODE_VERSION, check_specs=checks, **stage.options(PairRow))  # fmt: skip
    def dpo_pairs(
        context: dg.AssetExecutionContext, ratings: dict[str, pl.DataFrame]
    ) -> StepEvents:
        def output(batch: str, inputs: dict[str, pl.DataFrame]) -> BatchOutput:
            rated = schemas.from_frame(inputs["ratings"], RatingRow)
            rows = [pair_row(r, min_margin=policy.min_margin, rejected=policy.rejected) for r in rated]
            out = schemas.to_frame(rows, PairRow)
            cols = ["prompt_id", "chosen_model", "chosen_rating", "rejected_model", "rejected_rating", "status",
                    "reason"]  # fmt: skip
            report = pair_report(rows)
            checks = [
                ledger_result(STAGE, inputs["ratings"], out, max_rate, batch_rows(context, batch)),
                rate_result(TIES, report["ties"], report["judged"], quality.max_tie_rate),
            ]
            return result(out, cols, checks, **report_metadata(report | panel_pair_report(rows)))

        batches = batch_inputs(context, ratings=ratings)
        yield from materialize(context, {batch: output(batch, inputs) for batch, inputs in batches.items()})

    return dpo_pairs


def panel_pair_report(rows: Sequence[PairRow]) -> dict[str, Any]:
    """Return how many pairs each number of agreeing judges backs, and the principles of chosen and rejected
    answers (empty without principles)."""
    pairs = [r for r in rows if r.ok]
    agreeing = Counter(str(len(r.agreeing_judges or ())) for r in pairs)
    report: dict[str, Any] = {"pairs_by_agreeing_judges": dict(sorted(agreeing.items()))}
    if any(r.chosen_principle or r.rejected_principle for r in pairs):
        report["chosen_by_principle"] = dict(Counter(str(r.chosen_principle) for r in pairs).most_common())
        report["rejected_by_principle"] = dict(Counter(str(r.rejected_principle) for r in pairs).most_common())
    return report
