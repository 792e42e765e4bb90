"""`ratings`: the panel's verdicts on each prompt's answers, each judge's scores, and each answer's score."""

import dagster as dg
import polars as pl

from pref_assets.core.judge import UNPARSEABLE
from pref_assets.core.panel import panel_report
from pref_assets.core.quality import judge_report
from pref_assets.core.rating import JudgeSpec, Outcome, judge_all, plan_tasks, rating_rows
from pref_assets.core.rows import GroupedRow, RatingRow
from pref_assets.core.rubric import RUBRIC_VERSION
from pref_assets.defs import schemas
from pref_assets.defs.checks import PARSE_FAILURES, batch_rows, ledger_result, rate_result, warning_spec
from pref_assets.defs.metadata import histogram_chart, judge_figures, report_metadata
from pref_assets.defs.resources import LLMResource
from pref_assets.defs.stages.common import (
    CODE_VERSION,
    BatchOutput,
    Stage,
    StepEvents,
    batch_inputs,
    call_llm,
    materialize,
    result,
    split,
)
from pref_assets.settings import JudgeSettings, Settings

STAGE = "ratings"


def build_ratings(stage: Stage) -> dg.AssetsDefinition:
    """Return the `ratings` asset."""
    settings = stage.settings
    panel = judge_specs(settings)
    names = [j.name for j in panel]
    aspects = sorted({a for j in panel for a in j.aspects})
    quality, max_rate = settings.quality, settings.max_failure_rate
    limit = quality.max_judge_parse_failure_rate
    checks = [stage.ledger(STAGE), warning_spec(PARSE_FAILURES, stage.partitions, limit)]
    options = {"judge_options": dg.MetadataValue.json([judge_options(j) for j in settings.panel])}

    @dg.asset(description=f"Ratings per answer by {' + '.join(names)} ({', '.join(aspects)}), raw judge text kept.",
              code_version=f"{CODE_VERSION}-{RUBRIC_VERSION}", check_specs=checks,
              **stage.options(RatingRow, calls_llm=True))  # fmt: skip
    @stage.waits_for_batches
    def ratings(
        context: dg.AssetExecutionContext, llm: LLMResource, grouped: dict[str, pl.DataFrame]
    ) -> StepEvents:
        batches = batch_inputs(context, grouped=grouped)
        rows = {batch: schemas.from_frame(inputs["grouped"], GroupedRow) for batch, inputs in batches.items()}
        tasks = {batch: plan_tasks(r, panel) for batch, r in rows.items()}
        budget = stage.budget()
        # Every batch's judge calls (and re-asks), every judge's, go through one request loop; outcomes come back in
        # task order.
        outcomes = judge_all([t for ts in tasks.values() for t in ts],
                             lambda calls: call_llm(context, llm, budget, calls))  # fmt: skip
        by_batch = split(outcomes, {batch: len(ts) for batch, ts in tasks.items()})

        def output(batch: str) -> BatchOutput:
            rated = rating_rows(rows[batch], by_batch[batch], panel, settings.min_judges)
            out = schemas.to_frame(rated, RatingRow)
            cols = ["prompt_id", "generation_models", "judges", "scores", "status", "reason"]
            report = judge_report(rated)
            unparseable = report["failures_by_reason"].get(UNPARSEABLE, 0)
            checks = [
                ledger_result(STAGE, batches[batch]["grouped"], out, max_rate, batch_rows(context, batch)),
                rate_result(PARSE_FAILURES, unparseable, report["judge_calls"], limit),
            ]
            histogram = report.pop("rating_histogram")  # shown as the rating_distribution table
            chart = histogram_chart(histogram) | judge_figures(out)
            tokens = judge_tokens(by_batch[batch], settings.panel)
            figures = report | panel_report(rated, names, settings.min_judges)
            return result(out, cols, checks, **report_metadata(figures), **chart, **tokens, **options)

        yield from materialize(context, {batch: output(batch) for batch in batches})

    return ratings


def judge_tokens(outcomes: list[Outcome], panel: list[JudgeSettings]) -> dict[str, dg.MetadataValue]:
    """Return the panel's tokens, cached calls and cost over ``outcomes``, in total and per judge."""
    paid = [o for o in outcomes if not o.cached]
    by_judge = {
        j.name: round(j.cost_usd(sum(o.prompt_tokens for o in mine), sum(o.completion_tokens for o in mine)), 6)
        for j in panel
        for mine in [[o for o in paid if o.task.judge == j.name]]
    }
    return {
        "prompt_tokens": dg.MetadataValue.int(sum(o.prompt_tokens for o in outcomes)),
        "completion_tokens": dg.MetadataValue.int(sum(o.completion_tokens for o in outcomes)),
        "cached_calls": dg.MetadataValue.int(len(outcomes) - len(paid)),
        "calls_by_judge": dg.MetadataValue.json({j.name: sum(o.task.judge == j.name for o in outcomes) for j in panel}),
        "cost_usd": dg.MetadataValue.float(round(sum(by_judge.values()), 6)),
        "cost_usd_by_judge": dg.MetadataValue.json(by_judge),
    }


def judge_options(judge: JudgeSettings) -> dict[str, object]:
    """Return a judge's rating options as the metadata shows them (its params and prices are configuration)."""
    return {
        "name": judge.name,
        "model": judge.model,
        "endpoint": judge.endpoint,
        "aspects": list(judge.aspects),
        "shuffle": judge.shuffle,
        "position_swap": judge.position_swap,
        "max_reasks": judge.max_reasks,
        "max_answers_per_call": judge.max_answers_per_call,
        "rate_single_answers": judge.rate_single_answers,
    }


def judge_specs(settings: Settings) -> list[JudgeSpec]:
    """Return what the rating functions need to know of each judge of the panel."""
    return [judge_spec(settings, j) for j in settings.panel]


def judge_spec(settings: Settings, j: JudgeSettings) -> JudgeSpec:
    """Return what the rating functions need to know of judge ``j``."""
    return JudgeSpec(
        name=j.name,
        endpoint=j.endpoint,
        model=j.model,
        params=tuple(j.params.items()),
        aspects=tuple(j.aspects),
        flavour=settings.endpoint(j.endpoint).structured_output,
        shuffle=j.shuffle,
        max_reasks=j.max_reasks,
        position_swap=j.position_swap,
        rate_single_answers=j.rate_single_answers,
        max_answers_per_call=j.max_answers_per_call,
    )
