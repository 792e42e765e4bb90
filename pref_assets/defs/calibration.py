"""`judge_calibration`: the configured judges measured on labelled pairs before a big run.

An unpartitioned asset: every judge of the panel rates each reference pair twice (better answer first, then
second) through the same judge prompt, parser and request loop as ``ratings``; the figures per judge and for the
panel are its metadata, each presentation a stored row, and the ``calibration_accuracy`` check warns when the
panel's accuracy is below ``calibration.min_accuracy``. Logic: ``pref_assets.core.calibration``.
"""

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.clients.runner import Budget, Prices
from pref_assets.core.calibration import (
    PANEL,
    CalibrationPair,
    Presentation,
    calibration_panel,
    calibration_report,
    grouped_rows,
    presentations,
)
from pref_assets.core.prompts import PromptSourceError
from pref_assets.core.rating import judge_all, plan_tasks
from pref_assets.core.rubric import RUBRIC_VERSION
from pref_assets.defs.io_manager import FRAME, partition_path
from pref_assets.defs.resources import LLMResource
from pref_assets.defs.stages.common import LLM_POOL, call_llm
from pref_assets.defs.stages.ratings import judge_specs
from pref_assets.settings import EMBEDDED, Settings
from pref_assets.sources.calibration import read_calibration_pairs

ASSET = "judge_calibration"
CHECK = "calibration_accuracy"
GROUP = "calibration"
CODE_VERSION = "1"
BATCH_RUN_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")
HOW_TO_RUN = "dagster asset materialize --select judge_calibration -m pref_assets.definitions"
SMOKE_TEST = (
    "SMOKE TEST: the embedded SmolLM2-135M judge cannot judge; these figures only show that the calibration runs. "
    "Configure a real judge to measure it."
)
SCHEMA = {
    **dict.fromkeys(("pair_id", "flaw", "topic", "judge", "order"), pl.String),
    **dict.fromkeys(("better_score", "worse_score"), pl.Float64),
    **dict.fromkeys(("verdict", "failure"), pl.String),
}


def smoke_test(settings: Settings) -> bool:
    """Return whether a judge of the panel is the embedded model (whose figures mean nothing)."""
    return any(settings.endpoint(j.endpoint).base_url == EMBEDDED for j in settings.panel)


def build_calibration_asset(settings: Settings) -> dg.AssetsDefinition:
    """Return the `judge_calibration` asset and its warning check."""
    minimum = settings.calibration.min_accuracy
    about = "The judges rated labelled pairs (better / worse answer) in both orders: accuracy, ties, position bias."
    if smoke_test(settings):
        about = f"{SMOKE_TEST} {about}"
    check = dg.AssetCheckSpec(CHECK, asset=ASSET, description=f"The panel prefers the better answer at least "
                              f"{minimum:.0%} of the time (read presentations).")  # fmt: skip

    @dg.asset(name=ASSET, description=about, group_name=GROUP, io_manager_key="parquet_io", dagster_type=FRAME,
              code_version=f"{CODE_VERSION}-{RUBRIC_VERSION}", check_specs=[check], pool=LLM_POOL,
              metadata={"dagster/column_schema": _column_schema()}, output_required=False)  # fmt: skip
    def judge_calibration(
        context: dg.AssetExecutionContext, llm: LLMResource
    ) -> Iterator[dg.MaterializeResult | dg.Output]:
        if any(tag in context.run.tags for tag in BATCH_RUN_TAGS):
            # `--select '*' --partition K` selects this asset too: a batch run is no time to pay for calibration
            context.log.info(f"{ASSET} is not run with a batch; materialize it on its own: {HOW_TO_RUN}")
            for name in context.assets_def.check_specs_by_output_name:  # the check is not evaluated either
                yield dg.Output(None, output_name=name)
            return
        try:
            pairs, problems = read_calibration_pairs(settings.calibration.path, settings.calibration.limit)
        except PromptSourceError as err:
            raise dg.Failure(description=f"calibration pairs: {err}", allow_retries=False) from err
        if not pairs:
            raise dg.Failure(description=f"calibration pairs: no usable pair ({'; '.join(problems[:5])})")
        panel = calibration_panel(judge_specs(settings))
        budget = Budget(Prices(settings.prices()), settings.budget_usd_per_step)
        tasks = plan_tasks(grouped_rows(pairs), panel)
        outcomes = judge_all(tasks, lambda calls: call_llm(context, llm, budget, calls))
        shown = presentations(pairs, outcomes, [j.name for j in panel])
        report = calibration_report(shown)
        panel_figures = report[PANEL]
        accuracy = panel_figures["accuracy"]
        passed = accuracy is not None and accuracy >= minimum
        check_result = dg.AssetCheckResult(
            check_name=CHECK, passed=passed, severity=dg.AssetCheckSeverity.WARN,
            description=None if passed else _warning(accuracy, minimum, smoke_test(settings)),
            metadata={"accuracy": _number(accuracy), "min_accuracy": dg.MetadataValue.float(minimum)},
        )  # fmt: skip
        yield dg.MaterializeResult(
            value=_frame(shown),
            metadata=_metadata(settings, pairs, problems, report, outcomes_cost=budget.spent_usd),
            check_results=[check_result],
        )

    return judge_calibration


def read_calibration(storage_dir: str | Path) -> dict[str, dict[str, Any]] | None:
    """Return the figures of the last ``judge_calibration`` materialization in ``storage_dir`` (per judge and
    ``PANEL``), read back from its stored rows, or None when it has not run."""
    path = partition_path(str(storage_dir), ASSET, "all")
    if not path.is_file():
        return None
    return calibration_report([Presentation(**row) for row in pl.read_parquet(path).to_dicts()])


def _frame(shown: list[Presentation]) -> pl.DataFrame:
    return pl.DataFrame([asdict(p) for p in shown], schema=SCHEMA)


def _column_schema() -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in SCHEMA.items()])


def _metadata(settings: Settings, pairs: list[CalibrationPair], problems: list[str],
              report: dict[str, dict[str, Any]], outcomes_cost: float) -> dict[str, Any]:  # fmt: skip
    panel = report[PANEL]
    flaws = sorted({p.flaw for p in pairs})
    metadata: dict[str, Any] = {
        "accuracy": _number(panel["accuracy"]),
        "tie_rate": _number(panel["tie_rate"]),
        "first_position_win_rate": _number(panel["first_position_win_rate"]),
        "parse_rate": _number(panel["parse_rate"]),
        "right_in_both_orders": _number(panel["right_in_both_orders"]),
        "pairs": dg.MetadataValue.int(len(pairs)),
        "judges": dg.MetadataValue.json([j.name for j in settings.panel]),
        "per_judge": dg.MetadataValue.json(report),
        "accuracy_by_flaw": dg.MetadataValue.json(panel["accuracy_by_flaw"]),
        "flaws": dg.MetadataValue.json({f: sum(p.flaw == f for p in pairs) for f in flaws}),
        "reference_set": dg.MetadataValue.text(settings.calibration.path or "the shipped set"),
        "rows_left_out": dg.MetadataValue.json(problems[:50]),
        "cost_usd": dg.MetadataValue.float(round(outcomes_cost, 6)),
        "smoke_test": dg.MetadataValue.bool(smoke_test(settings)),
    }
    if smoke_test(settings):
        metadata["note"] = dg.MetadataValue.text(SMOKE_TEST)
    return metadata


def _warning(accuracy: float | None, minimum: float, smoke: bool) -> str:
    figure = "no presentation could be read" if accuracy is None else f"accuracy {accuracy:.0%}"
    advice = SMOKE_TEST if smoke else "check the judge model, its aspects and its endpoint before a large run"
    return f"{figure}, below {minimum:.0%}: {advice}"


def _number(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()
