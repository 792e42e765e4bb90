"""The six batch-partitioned assets. Bodies stay thin: inputs in, core and clients called, frame out."""

import json

import dagster as dg
import polars as pl

from pref_assets.clients.argilla import ArgillaError, push_records
from pref_assets.clients.llm import ChatResult, EndpointConfigError
from pref_assets.clients.runner import Budget, EndpointParkedError, Prices, run_calls
from pref_assets.core import status
from pref_assets.core.calls import Call
from pref_assets.core.generation import generation_row, plan_generations, upstream_failure_row
from pref_assets.core.grouping import group_generations
from pref_assets.core.ids import row_id, source_row_ids
from pref_assets.core.judge import UNPARSEABLE
from pref_assets.core.pairs import pair_row
from pref_assets.core.prompts import PromptSourceError, normalize_rows
from pref_assets.core.quality import duplicate_prompts, empty_answers, judge_report, pair_report
from pref_assets.core.rating import JudgeSpec, Outcome, judge_all, plan_tasks, rating_rows
from pref_assets.core.records import build_record
from pref_assets.core.rubric import RUBRIC_VERSION
from pref_assets.defs import schemas
from pref_assets.defs.checks import (
    DUPLICATES,
    EMPTY_ANSWERS,
    PARSE_FAILURES,
    TIES,
    ledger_result,
    ledger_spec,
    rate_result,
    warning_spec,
)
from pref_assets.defs.io_manager import FRAME
from pref_assets.defs.metadata import (
    call_metadata,
    cost_usd,
    histogram_chart,
    preview,
    report_metadata,
    status_metadata,
)
from pref_assets.defs.resources import ArgillaResource, LLMResource
from pref_assets.defs.sensors import HUB_REVISION_TAG
from pref_assets.settings import JudgeSettings, Settings
from pref_assets.sources import read_batch
from pref_assets.sources.hub import pinned

GROUP = "preference"
CODE_VERSION = "1"
# Downstream assets follow a new or changed upstream partition when the automation sensor is on (it is off by
# default: these steps pay for LLM calls), never past a failed blocking check.
FOLLOW_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
# Steps that call LLMs share one pool (its limit is in dagster.yaml) and retry a failed step with backoff;
# completed calls come from the request cache, so a retry re-sends only what failed.
LLM_POOL = "llm"
LLM_RETRY = dg.RetryPolicy(max_retries=2, delay=20, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def build_assets(settings: Settings, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Return the six assets for ``settings``, all partitioned by ``partitions``."""
    common = {"partitions_def": partitions, "group_name": GROUP, "io_manager_key": "parquet_io", "dagster_type": FRAME}
    follows = common | {"automation_condition": FOLLOW_UPSTREAM}
    calls_llm = {"pool": LLM_POOL, "retry_policy": LLM_RETRY}
    generators = settings.generators
    judge = _judge_spec(settings)
    max_rate = settings.max_failure_rate
    quality = settings.quality

    def ledger(stage: str) -> dg.AssetCheckSpec:
        return ledger_spec(stage, max_rate, partitions)

    generation_checks = [
        ledger("generations_by_model"),
        warning_spec(EMPTY_ANSWERS, partitions, quality.max_empty_answer_rate),
    ]
    rating_checks = [ledger("ratings"), warning_spec(PARSE_FAILURES, partitions, quality.max_judge_parse_failure_rate)]
    pair_checks = [ledger("dpo_pairs"), warning_spec(TIES, partitions, quality.max_tie_rate)]

    @dg.asset(description="One batch of prompts: ids, instructions, topics; bad rows kept with a reason.",
              code_version=CODE_VERSION, check_specs=[warning_spec(DUPLICATES, partitions, 0.0)], **common)  # fmt: skip
    def prompts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        try:
            source = pinned(settings.source, context.run.tags.get(HUB_REVISION_TAG))
            raw, (start, stop) = read_batch(source, context.partition_key, settings.batch_size)
            row_key = source_row_ids(context.partition_key, settings.batch_size)
            rows = normalize_rows(
                raw, settings.source.columns, max_chars=settings.source.max_prompt_chars, row_key=row_key
            )
        except PromptSourceError as err:
            raise dg.Failure(description=f"prompt source: {err}") from err
        if start >= len(rows):
            raise dg.Failure(
                description=f"prompt source: {context.partition_key} covers rows {start + 1}-{stop}, but the source "
                f"now has {len(rows)} rows (it shrank since the partitions were listed). Nothing was written.",
                allow_retries=False,
            )
        batch = rows[start:stop]
        out = schemas.frame(batch, schemas.PROMPTS)
        cols = ["row_id", "prompt_id", "topic", "instruction", "status", "reason"]
        return _result(
            out, cols, [rate_result(DUPLICATES, *duplicate_prompts(batch), 0.0)], source=settings.source.kind
        )

    @dg.asset(description="Each generator's answer to each prompt, with tokens, latency and errors.",
              code_version=CODE_VERSION, check_specs=generation_checks,
              **follows, **calls_llm)  # fmt: skip
    def generations_by_model(
        context: dg.AssetExecutionContext, llm: LLMResource, prompts: pl.DataFrame
    ) -> dg.MaterializeResult:
        rows = _prompt_rows(prompts, context.partition_key)
        plan = [(p["row_id"], entry) for p in rows for entry in plan_generations([p], generators)]
        budget = Budget(Prices(settings.prices()), settings.budget_usd_per_step)
        results = _call_llm(context, llm, budget, [call for _, (_, _, call) in plan])
        out_rows = [
            generation_row(pid, name, result) | {"row_id": rid}
            for (rid, (pid, name, _)), result in zip(plan, results, strict=True)
        ]
        out_rows += [upstream_failure_row(p) | {"row_id": p["row_id"]} for p in rows if p["status"] != status.OK]
        out = schemas.frame(out_rows, schemas.GENERATIONS)
        cost = cost_usd(out, {g.name: g for g in generators})
        return _result(
            out,
            ["prompt_id", "model", "generation", "status", "reason"],
            [
                ledger_result("generations_by_model", prompts, out, max_rate),
                rate_result(EMPTY_ANSWERS, *empty_answers(out_rows), quality.max_empty_answer_rate),
            ],
            **call_metadata(out, "model"),
            **cost,
        )

    @dg.asset(description="One row per prompt: answers and model names in aligned lists, gaps visible.",
              code_version=CODE_VERSION, check_specs=[ledger("grouped")], **follows)  # fmt: skip
    def grouped(
        context: dg.AssetExecutionContext, prompts: pl.DataFrame, generations_by_model: pl.DataFrame
    ) -> dg.MaterializeResult:
        names = [g.name for g in generators]
        rows = group_generations(_prompt_rows(prompts, context.partition_key), generations_by_model.to_dicts(), names)
        out = schemas.frame(rows, schemas.GROUPED)
        cols = ["prompt_id", "generation_models", "generation_status", "status", "reason"]
        return _result(out, cols, [ledger_result("grouped", prompts, out, max_rate)])

    @dg.asset(description=f"Judge ratings per answer ({', '.join(judge.aspects)}), raw judge text kept.",
              code_version=f"{CODE_VERSION}-{RUBRIC_VERSION}", check_specs=rating_checks,
              **follows, **calls_llm)  # fmt: skip
    def ratings(
        context: dg.AssetExecutionContext, llm: LLMResource, prompts: pl.DataFrame, grouped: pl.DataFrame
    ) -> dg.MaterializeResult:
        rows = grouped.to_dicts()
        budget = Budget(Prices(settings.prices()), settings.budget_usd_per_step)
        run = lambda calls: _call_llm(context, llm, budget, calls)  # noqa: E731
        outcomes = judge_all(plan_tasks(rows, judge), run, judge.max_reasks)
        rated = rating_rows(rows, outcomes, judge)
        out = schemas.frame(rated, schemas.RATINGS)
        cols = ["prompt_id", "generation_models", "scores", "status", "reason"]
        report = judge_report(rated)
        chart = histogram_chart(report["rating_histogram"])
        unparseable = report["failures_by_reason"].get(UNPARSEABLE, 0)
        checks = [
            ledger_result("ratings", prompts, out, max_rate),
            rate_result(PARSE_FAILURES, unparseable, report["judge_calls"], quality.max_judge_parse_failure_rate),
        ]
        return _result(out, cols, checks, **report_metadata(report), **chart, **_judge_tokens(outcomes, settings.judge))

    @dg.asset(description="Chosen/rejected pairs in the FormatTextGenerationDPO layout TRL reads.",
              code_version=CODE_VERSION, check_specs=pair_checks, **follows)  # fmt: skip
    def dpo_pairs(prompts: pl.DataFrame, ratings: pl.DataFrame) -> dg.MaterializeResult:
        policy = settings.pairs
        rows = [
            pair_row(r, min_margin=policy.min_margin, rejected=policy.rejected) for r in ratings.to_dicts()
        ]
        out = schemas.frame(rows, schemas.DPO_PAIRS)
        cols = [
            "prompt_id",
            "chosen_model",
            "chosen_rating",
            "rejected_model",
            "rejected_rating",
            "status",
            "reason",
        ]
        report = pair_report(rows)
        checks = [
            ledger_result("dpo_pairs", prompts, out, max_rate),
            rate_result(TIES, report["ties"], report["judged"], quality.max_tie_rate),
        ]
        return _result(out, cols, checks, **report_metadata(report))

    @dg.asset(description="Records for human review in Argilla; pushed when an Argilla URL is configured.",
              code_version=CODE_VERSION, check_specs=[ledger("argilla_records")], **follows)  # fmt: skip
    def argilla_records(
        context: dg.AssetExecutionContext, argilla: ArgillaResource, prompts: pl.DataFrame, ratings: pl.DataFrame
    ) -> dg.MaterializeResult:
        rows = _records(ratings.to_dicts(), argilla.dataset, context.partition_key)
        target = "not pushed: no Argilla URL configured; records kept in this asset's Parquet file"
        if argilla.url:
            client = argilla.client()
            try:
                rows, target = push_records(client, argilla.dataset, argilla.workspace, rows, len(generators))
            except ArgillaError as err:
                raise dg.Failure(description=f"Argilla: {err}") from err
            finally:
                client.close()
        out = schemas.frame(rows, schemas.ARGILLA_RECORDS)
        cols = ["prompt_id", "record_id", "pushed", "status", "reason"]
        return _result(out, cols, [ledger_result("argilla_records", prompts, out, max_rate)], argilla=target)

    return [prompts, generations_by_model, grouped, ratings, dpo_pairs, argilla_records]


def _records(rows: list[dict], dataset: str, batch: str) -> list[dict]:
    out = []
    for row in rows:
        base = {
            "row_id": row.get("row_id"),
            "prompt_id": row["prompt_id"],
            "record_id": None,
            "record": None,
            "pushed": False,
            "push_error": None,
        }
        if row["status"] != status.OK:
            out.append(base | {k: row[k] for k in ("status", "failed_stage", "reason")})
            continue
        record = build_record(row, dataset=dataset, batch=batch)
        out.append(base | {"record_id": record["id"], "record": json.dumps(record, ensure_ascii=False)} | status.ok())
    return out


def _prompt_rows(prompts: pl.DataFrame, batch: str) -> list[dict]:
    """Return the batch's prompt rows; rows stored before row ids existed get theirs (batch key and position)."""
    return [r if r.get("row_id") else r | {"row_id": row_id(batch, i)} for i, r in enumerate(prompts.to_dicts())]


def _call_llm(
    context: dg.AssetExecutionContext, llm: LLMResource, budget: Budget, calls: list[Call]
) -> list[ChatResult]:
    try:
        return run_calls(calls, llm.client, budget=budget, log=context.log.info)
    except (EndpointParkedError, EndpointConfigError) as err:
        # A step retry would meet the same open breaker or configuration; the user reruns once it is mended.
        raise dg.Failure(description=str(err), allow_retries=False) from err


def _judge_tokens(outcomes: list[Outcome], judge: JudgeSettings) -> dict[str, dg.MetadataValue]:
    paid = [o for o in outcomes if not o.cached]
    prompt, completion = sum(o.prompt_tokens for o in paid), sum(o.completion_tokens for o in paid)
    cost = judge.cost_usd(prompt, completion)
    return {
        "prompt_tokens": dg.MetadataValue.int(sum(o.prompt_tokens for o in outcomes)),
        "completion_tokens": dg.MetadataValue.int(sum(o.completion_tokens for o in outcomes)),
        "cached_calls": dg.MetadataValue.int(len(outcomes) - len(paid)),
        "cost_usd": dg.MetadataValue.float(round(cost, 6)),
    }


def _judge_spec(settings: Settings) -> JudgeSpec:
    j = settings.judge
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
    )


def _result(
    out: pl.DataFrame, columns: list[str], checks: list[dg.AssetCheckResult], **extra: object
) -> dg.MaterializeResult:
    metadata = status_metadata(out) | preview(out, columns)
    metadata |= {k: v if isinstance(v, dg.MetadataValue) else dg.MetadataValue.text(str(v)) for k, v in extra.items()}
    return dg.MaterializeResult(value=out, metadata=metadata, check_results=checks)
