"""Fault injection end to end: three batches through a server that rate-limits, fails, hangs and garbles.

Every prompt must come out of every stage ok, or failed/skipped with the stage and the reason; no
failed answer, judgement or pair may pass as a good one. The counts are printed and written to
``fault_report.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from reliability_support import (
    GENERATORS,
    PIPELINE_STAGES,
    fake_settings,
    read_stage,
    run_partition,
    status_counts,
    write_prompts,
)

from pref_assets.testing.fake_openai import run_fake_openai

PARTITIONS = ("batch-00000", "batch-00001", "batch-00002")
BATCH = 20
FAULTS = {"rpm": 2400.0, "burst": 20, "fail_5xx": 0.08, "fail_timeout": 0.05, "malformed": 0.05, "truncated": 0.02}


@pytest.mark.slow
def test_every_prompt_is_accounted_for_under_injected_faults(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, BATCH * len(PARTITIONS))
    store = tmp_path / "store"
    with run_fake_openai(latency=0.02, seed=11, **FAULTS) as server:
        # Two attempts per call, so that some calls run out of retries and their rows fail with a reason.
        settings = fake_settings(
            server.base_url,
            store,
            source,
            batch_size=BATCH,
            max_failure_rate=0.9,
            endpoint={"timeout_s": 2, "max_attempts": 2, "max_concurrency": 8},
        )
        instance = dg.DagsterInstance.ephemeral()
        for partition in PARTITIONS:
            result = run_partition(settings, partition, instance)
            assert result.success
            assert all(c.passed for c in result.get_asset_check_evaluations())
        stats = server.stats()

    frames = {(s, p): read_stage(store, s, p) for s in PIPELINE_STAGES for p in PARTITIONS}
    for partition in PARTITIONS:
        stage = {s: frames[(s, partition)] for s in PIPELINE_STAGES}
        _assert_ledger(stage)
        cut = stage["generations_by_model"].filter(pl.col("truncated"))
        assert (cut["finish_reason"] == "length").all() and (cut["status"] == "ok").all()
        _assert_grouped_aligned(stage["grouped"], stage["generations_by_model"])
        _assert_ratings_sound(stage["ratings"])
        _assert_pairs_sound(stage["dpo_pairs"], stage["ratings"])

    report = _report(stats, frames)
    (tmp_path / "fault_report.json").write_text(json.dumps(report, indent=2))
    print("\nfault injection report:\n" + json.dumps(report, indent=2))
    injected = report["faults_injected"]
    assert injected["429"] > 0 and injected["5xx"] > 0 and injected["timeouts"] > 0
    assert sum(injected.values()) >= 0.1 * stats["requests"]
    assert report["repeated_after_success"] == 0


def test_an_endpoint_that_rejects_structured_output_is_asked_in_the_prompt_only(tmp_path: Path) -> None:
    """The judge requests reach the model without response_format instead of failing with HTTP 400. (The fake
    server answers free text when no schema is requested, so here the judge answers are unreadable: every row
    fails as judge_unparseable with the raw text, never as an HTTP error, and the ledger check stops the batch.)"""
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 6)
    with run_fake_openai(reject_response_format=True) as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=6)
        instance = dg.DagsterInstance.ephemeral()
        result = run_partition(settings, "batch-00000", instance, raise_on_error=False)
        stats = server.stats()
    assert stats["by_status"]["400"] >= 1
    ratings = read_stage(tmp_path / "store", "ratings", "batch-00000")
    assert ratings.height == 6
    assert all(reason.startswith("judge_unparseable") for reason in ratings["reason"].to_list())
    assert all(j["raw_text"] for row in ratings["judgements"].to_list() for j in row)
    logs = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("rejected the request field response_format" in m and "structured_output" in m for m in logs)


def _assert_ledger(stage: dict[str, pl.DataFrame]) -> None:
    """Every prompt id is in every stage; a row is ok, or failed/skipped with its stage and reason."""
    ids = stage["prompts"]["prompt_id"].to_list()
    assert len(ids) == BATCH and len(set(ids)) == BATCH
    for name, frame in stage.items():
        assert set(frame["prompt_id"].to_list()) == set(ids), name
        assert set(frame["status"].unique().to_list()) <= {"ok", "failed", "skipped"}, name
        bad = frame.filter(
            (pl.col("status") != "ok")
            & (pl.col("failed_stage").is_null() | pl.col("reason").is_null() | (pl.col("reason") == ""))
        )
        assert bad.is_empty(), f"{name}: non-ok rows without stage or reason:\n{bad}"
        ok = frame.filter(pl.col("status") == "ok")
        assert ok["failed_stage"].is_null().all() and ok["reason"].is_null().all(), name
        if name != "generations_by_model":
            assert frame.height == BATCH, name
    gens = stage["generations_by_model"]
    ok_prompts = stage["prompts"].filter(pl.col("status") == "ok")["prompt_id"].to_list()
    per_prompt = Counter(gens.filter(pl.col("model").is_not_null())["prompt_id"].to_list())
    assert all(per_prompt[pid] == len(GENERATORS) for pid in ok_prompts)


def _assert_grouped_aligned(grouped: pl.DataFrame, gens: pl.DataFrame) -> None:
    """Lists are aligned to the configured model order and carry exactly the per-model rows."""
    by_key = {(r["prompt_id"], r["model"]): r for r in gens.to_dicts() if r["model"] is not None}
    for row in grouped.to_dicts():
        n = len(row["generation_models"])
        assert n == len(row["generations"]) == len(row["generation_status"]) == len(row["generation_reasons"])
        assert row["generation_models"] == list(GENERATORS)
        if row["status"] != "ok" and row["failed_stage"] == "prompts":
            continue
        for model, text, state in zip(
            row["generation_models"], row["generations"], row["generation_status"], strict=True
        ):
            source = by_key[(row["prompt_id"], model)]
            assert state == source["status"]
            assert text == (source["generation"] if state == "ok" else None)
        assert (row["status"] == "ok") == ("ok" in row["generation_status"])


def _assert_ratings_sound(ratings: pl.DataFrame) -> None:
    """An ok row has a score for every answer it has and none for a missing answer; a failed row none."""
    for row in ratings.to_dicts():
        answered = [text is not None for text in row["generations"]]
        if row["status"] == "ok":
            assert [s is not None for s in row["scores"]] == answered, row["prompt_id"]
            assert all(1 <= s <= 5 for s in row["scores"] if s is not None)
            assert all(j["failure"] is None for j in row["judgements"])
        elif row["status"] == "skipped":  # not worth a judge call: no pair can come of it
            assert (row["failed_stage"], row["reason"]) == ("ratings", "fewer_than_two_answers")
            assert sum(answered) < 2 and not row["judgements"]
            assert all(s is None for s in row["scores"])
        else:
            assert all(s is None for s in row["scores"])
            if row["failed_stage"] == "ratings":
                assert row["reason"].split(":")[0] in {"judge_unparseable", "judge_truncated", "judge_request_failed"}
                failed = [j for j in row["judgements"] if j["failure"]]
                assert failed
                assert all(
                    j["raw_text"] for j in failed if j["failure"].startswith(("judge_unparseable", "judge_truncated"))
                )


def _assert_pairs_sound(pairs: pl.DataFrame, ratings: pl.DataFrame) -> None:
    """An ok pair has two different answers, the chosen one strictly better, ratings from the judge."""
    scores = {r["prompt_id"]: r for r in ratings.to_dicts()}
    for row in pairs.filter(pl.col("status") == "ok").to_dicts():
        assert row["chosen"] != row["rejected"] and row["chosen_model"] != row["rejected_model"]
        assert row["chosen"][-1]["content"].strip() != row["rejected"][-1]["content"].strip()
        assert row["chosen_rating"] > row["rejected_rating"]
        rated = scores[row["prompt_id"]]
        assert rated["status"] == "ok"
        index = {m: i for i, m in enumerate(rated["generation_models"])}
        assert rated["scores"][index[row["chosen_model"]]] == row["chosen_rating"]
        assert rated["scores"][index[row["rejected_model"]]] == row["rejected_rating"]
        assert rated["generations"][index[row["chosen_model"]]] == row["chosen"][-1]["content"]
    for row in pairs.filter(pl.col("status") != "ok").to_dicts():
        assert row["chosen"] is None and row["rejected"] is None


def _report(stats: dict[str, Any], frames: dict[tuple[str, str], pl.DataFrame]) -> dict[str, Any]:
    by_status = Counter(stats["by_status"])
    rows: dict[str, dict[str, int]] = {}
    for stage in PIPELINE_STAGES:
        combined = pl.concat([frames[(stage, p)] for p in PARTITIONS])
        rows[stage] = status_counts(combined)
    gens = pl.concat([frames[("generations_by_model", p)] for p in PARTITIONS])
    judgements = [j for p in PARTITIONS for js in frames[("ratings", p)]["judgements"].to_list() for j in js]
    return {
        "requests": stats["requests"],
        "faults_injected": {
            "429": by_status["429"],
            "5xx": by_status["500"] + by_status["503"],
            "timeouts": by_status["disconnected"],
        },
        "http_200": by_status["200"],
        "repeated_after_success": stats["repeated_after_success"],
        "truncated_generations_kept": int(gens["truncated"].sum()),
        "judge_reasks": sum(1 for j in judgements if j["attempts"] > 1),
        "rows": rows,
    }
