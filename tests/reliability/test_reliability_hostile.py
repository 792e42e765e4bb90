"""Hostile servers end to end: the real pipeline against a fake server whose answers attack their reader.

Each mode is a knob of the fake server: judge answers of deeply nested JSON, answers of tens of megabytes, a
body dripped byte by byte, answers and error messages that repeat the request's headers (the API key among
them), and generator answers that plant a verdict for the judge. Every prompt must still come out with a
status and a reason, and nothing the server sent may decide a pair, exhaust memory, hang the run or leak the key.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from reliability_support import (
    failure_messages,
    fake_settings,
    read_stage,
    run_driver,
    run_partition,
    write_prompts,
)

from pref_assets.testing.fake_openai import TIE_RATING, run_fake_openai

PARTITION = "batch-00000"
NESTED_DEPTH = 50_000  # a 100,000-character judge answer: over the bound on kept raw text
RAW_TEXT_LIMIT = 64 * 1024
HUGE_BYTES = 48_000_000
RESPONSE_LIMIT = 1 << 20
SLOW_BYTE_S = 0.2  # a whole answer would take minutes to arrive
ECHO_KEY = "sk-HostileEcho-Q7x9Lm2Vb4Nc8Tz1Hw5"
KEY_PREFIX = 12


def test_deeply_nested_judge_json_fails_its_rows_and_a_rerun_reads_it_from_the_cache(tmp_path: Path) -> None:
    source, store = _prompts(tmp_path, 8)
    with run_fake_openai(nested_judge=0.7, nested_depth=NESTED_DEPTH) as server:
        settings = fake_settings(server.base_url, store, source, batch_size=8, max_failure_rate=0.9)
        first = run_partition(settings, PARTITION, raise_on_error=False)
        assert first.success, failure_messages(first)
        nested = server.stats()["hostile"].get("nested_judge", 0)
        ratings = read_stage(store, "ratings", PARTITION)
        server.reset()
        second = run_partition(settings, PARTITION, raise_on_error=False)
        assert second.success, failure_messages(second)
        rerun_requests = server.stats()["requests"]

    assert nested > 0
    failed = ratings.filter(pl.col("status") != "ok")
    assert failed.height > 0, "no judge answer stayed nested after the re-ask; the fixture lost its point"
    for row in failed.to_dicts():
        assert row["failed_stage"] == "ratings" and row["reason"].startswith("judge_unparseable"), row["reason"]
        raw = [j["raw_text"] for j in row["judgements"] if j["failure"]]
        assert raw and all(text.startswith("[[[[") for text in raw)
        assert all(len(text.encode()) <= RAW_TEXT_LIMIT for text in raw), "raw judge text kept whole"
    for row in ratings.filter(pl.col("status") == "ok").to_dicts():
        assert all(j["failure"] is None for j in row["judgements"])
    # The rerun sent nothing (every answer, nested ones included, came from the cache) and read them the same way.
    assert rerun_requests == 0
    again = read_stage(store, "ratings", PARTITION)
    assert again.select("prompt_id", "status", "reason").equals(ratings.select("prompt_id", "status", "reason"))


def test_huge_answers_fail_at_the_size_limit_and_stay_out_of_memory_and_cache(tmp_path: Path) -> None:
    endpoint = {"max_response_bytes": RESPONSE_LIMIT, "max_attempts": 1, "max_concurrency": 4, "timeout_s": 60}
    reports = {}
    for name, knobs in (("baseline", {}), ("huge", {"huge_body_bytes": HUGE_BYTES, "huge_body_fraction": 0.5})):
        source, store = _prompts(tmp_path / name, 6)
        with run_fake_openai(**knobs) as server:
            settings = fake_settings(
                server.base_url, store, source, batch_size=6, endpoint=endpoint, max_failure_rate=1.0
            )
            reports[name] = run_driver(settings, PARTITION, tmp_path / name, timeout=240)
            hostile = server.stats()["hostile"]
    huge_store = tmp_path / "huge" / "store"

    assert hostile.get("huge_body", 0) > 0
    gens = read_stage(huge_store, "generations_by_model", PARTITION)
    failed = gens.filter(pl.col("status") != "ok")
    assert failed.height > 0 and failed.height < gens.height
    for reason in failed["reason"].to_list():
        assert reason.startswith("response_too_large"), reason
        assert "max_response_bytes" in reason or str(RESPONSE_LIMIT) in reason.replace(",", ""), reason
    assert all(len(text.encode()) < RESPONSE_LIMIT for text in gens["generation"].drop_nulls().to_list())
    for row in read_stage(huge_store, "ratings", PARTITION).to_dicts():
        assert all(len((j["raw_text"] or "").encode()) < RESPONSE_LIMIT for j in row["judgements"])
    cache = _files(huge_store / "cache")
    assert cache, "no request cache was written"
    assert sum(p.stat().st_size for p in cache) < RESPONSE_LIMIT, {p.name: p.stat().st_size for p in cache}
    grown_kb = reports["huge"]["max_rss_kb"] - reports["baseline"]["max_rss_kb"]
    assert grown_kb * 1024 < HUGE_BYTES, f"peak RSS grew by {grown_kb} kB over the baseline run"


def test_a_dripping_body_times_out_per_timeout_s(tmp_path: Path) -> None:
    source, store = _prompts(tmp_path, 6)
    endpoint = {"timeout_s": 1.0, "max_attempts": 1, "max_concurrency": 12}
    with run_fake_openai(slow_body=SLOW_BYTE_S) as server:
        settings = fake_settings(server.base_url, store, source, batch_size=6, endpoint=endpoint, max_failure_rate=1.0)
        started = time.monotonic()
        run_partition(settings, PARTITION, raise_on_error=False)
        elapsed = time.monotonic() - started
        dripped = server.stats()["hostile"].get("slow_body", 0)

    gens = read_stage(store, "generations_by_model", PARTITION)
    assert gens.height == 12 and dripped >= 12
    assert set(gens["status"].to_list()) == {"failed"}
    assert all(reason.startswith("timeout") for reason in gens["reason"].to_list()), gens["reason"].to_list()
    assert all(0.9 <= latency < 10 for latency in gens["latency_s"].to_list()), gens["latency_s"].to_list()
    # A client that only bounds the wait between two bytes would still be reading: one answer takes minutes.
    assert elapsed < 30, f"the run took {elapsed:.0f} s"


def test_a_planted_verdict_never_decides_a_pair(tmp_path: Path) -> None:
    source, store = _prompts(tmp_path, 6)
    with run_fake_openai(planted_verdict=True) as server:
        settings = fake_settings(server.base_url, store, source, batch_size=6, max_failure_rate=1.0)
        result = run_partition(settings, PARTITION, raise_on_error=False)

    gens = read_stage(store, "generations_by_model", PARTITION)
    assert all("## Answer 2" in text for text in gens["generation"].to_list()), "the answers plant nothing"
    ratings = read_stage(store, "ratings", PARTITION)
    assert ratings.height == 6
    for row in ratings.to_dicts():
        assert all('"rating": 5' in (j["raw_text"] or "") for j in row["judgements"]), "the judge quoted nothing"
        if row["status"] == "ok":
            assert row["scores"] == [TIE_RATING, TIE_RATING], row["scores"]
        else:
            assert row["failed_stage"] == "ratings" and row["reason"].startswith("judge_"), row["reason"]
    pairs = read_stage(store, "dpo_pairs", PARTITION)
    assert pairs.filter(pl.col("status") == "ok").is_empty(), pairs.filter(pl.col("status") == "ok").to_dicts()
    tied = pairs.filter(pl.col("failed_stage") == "dpo_pairs")
    assert tied["reason"].to_list() == ["all_tied"] * tied.height
    assert result.success, failure_messages(result)


def test_echoed_headers_leave_no_trace_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOSTILE_LLM_KEY", ECHO_KEY)
    source, store = _prompts(tmp_path, 8)
    instance = dg.DagsterInstance.ephemeral()
    with run_fake_openai(echo_headers=True, fail_5xx=0.4, seed=5) as server:
        endpoint = {"api_key_env": "HOSTILE_LLM_KEY", "max_attempts": 1}
        settings = fake_settings(server.base_url, store, source, batch_size=8, endpoint=endpoint, max_failure_rate=1.0)
        result = run_partition(settings, PARTITION, instance, raise_on_error=False)
        stats = server.stats()
    captured = capfd.readouterr()

    # The key was echoed both ways: in answers and in error messages that reached rows.
    assert stats["by_status"].get("200", 0) > 0 and stats["by_status"].get("500", 0) + stats["by_status"].get("503", 0)
    gens = read_stage(store, "generations_by_model", PARTITION)
    assert gens.filter(pl.col("reason").str.contains("HTTP 50")).height > 0
    assert gens.filter(pl.col("status") == "ok").height > 0
    texts = {
        "stdout": captured.out,
        "stderr": captured.err,
        "failures": "\n".join(failure_messages(result)),
        "event log": "\n".join(repr(record) for record in instance.all_logs(result.run_id)),
    }
    assert _traces(ECHO_KEY, [store], texts) == []

    # The search finds the key where there is one: a lower-cased prefix in a nested Parquet cell, in SQLite.
    control = tmp_path / "control"
    control.mkdir()
    leaked = f"error: bearer {ECHO_KEY.lower()[: KEY_PREFIX + 2]}"
    pl.DataFrame({"rows": [[{"reason": leaked}]]}).write_parquet(control / "leak.parquet", compression="zstd")
    with sqlite3.connect(control / "leak.sqlite") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (leaked,))
    db.close()
    found = _traces(ECHO_KEY, [control], {"output": f"...{ECHO_KEY[-20:]}"})
    assert found == [str(control / "leak.parquet"), str(control / "leak.sqlite")]


def _prompts(root: Path, count: int) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    source = root / "prompts.jsonl"
    write_prompts(source, count)
    return source, root / "store"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _traces(key: str, roots: list[Path], texts: dict[str, str]) -> list[str]:
    """Return the files under ``roots`` and the named texts that hold the first ``KEY_PREFIX`` characters of
    ``key`` in any case (so the key itself, its lower-cased form and every cut of it at 12 or more characters).
    Parquet is searched in its decoded cells, SQLite in its dump, anything else in its bytes."""
    needle = key[:KEY_PREFIX].lower()
    hits = [str(p) for root in roots for p in _files(root) if needle in _readable(p).lower()]
    return hits + [name for name, text in texts.items() if needle in text.lower()]


def _readable(path: Path) -> str:
    if path.suffix == ".parquet":
        return pl.read_parquet(path).write_ndjson()
    if path.suffix in (".sqlite", ".db"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            dump = "\n".join(db.iterdump())
        db.close()
        return dump
    return path.read_bytes().decode("latin-1")
