"""Bad input: a file that cannot be read stops ``prompts`` with the file, the line and the problem; a bad
row is kept, failed with a reason, and never sent to a model; a bad configuration or endpoint is named.
Nothing already materialized is lost when a later file turns out bad."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from reliability_support import (
    GENERATORS,
    PIPELINE_STAGES,
    closed_port,
    failure_messages,
    fake_settings,
    read_stage,
    run_partition,
    stub_openai,
    write_prompts,
)

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import Settings, SettingsError, load_settings
from pref_assets.testing.fake_openai import run_fake_openai

PARTITION = "batch-00000"
NOWHERE = "http://127.0.0.1:9/v1"
MEGABYTE = 1_000_000


def _materialize_prompts(settings: Settings, partition: str = PARTITION) -> dg.ExecuteInProcessResult:
    """Materialize only the ``prompts`` asset of one partition, as the UI or CLI would."""
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    return job.execute_in_process(
        partition_key=partition,
        asset_selection=[dg.AssetKey("prompts")],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- files that cannot be read


def _empty(path: Path) -> str:
    path.write_text("\n  \n")
    return f"{path}: the file has no rows"


def _malformed_line(path: Path) -> str:
    _jsonl(path, [{"instruction": "fine"}, {"instruction": "also fine"}, '{"instruction": "cut off'])
    return f"{path}:3: malformed JSON"


def _no_instruction_column(path: Path) -> str:
    _jsonl(path, [{"question": "What is a river?", "topic": "geo"}])
    return f"{path}: no column 'instruction' (or 'messages' for chat prompts); columns present: ['question', 'topic']"


def _not_utf8(path: Path) -> str:
    data = b'{"instruction": "fine"}\n{"instruction": "caf\xe9 au lait"}\n'
    path.write_bytes(data)
    return f"{path}:2: not UTF-8 (byte 0xe9 at offset {data.index(0xE9)})"


@pytest.mark.parametrize(
    "write",
    [_empty, _malformed_line, _no_instruction_column, _not_utf8],
    ids=["empty", "malformed-json", "no-instruction-column", "not-utf8"],
)
def test_unreadable_file_stops_prompts_naming_file_line_and_problem(tmp_path: Path, write: Any) -> None:
    source = tmp_path / "prompts.jsonl"
    expected = write(source)
    result = _materialize_prompts(fake_settings(NOWHERE, tmp_path / "store", source, batch_size=4))
    assert not result.success
    messages = failure_messages(result)
    assert any(expected in m for m in messages), messages
    assert not (tmp_path / "store" / "prompts").exists()


# ---------------------------------------------------------------- rows that are kept with a reason

BAD_ROWS: dict[int, str] = {
    2: "empty_instruction: empty or whitespace only",
    3: "duplicate: same prompt as {path}:1",
    4: "invalid_messages: no user turn",
    5: f"instruction_too_long: {MEGABYTE} characters, over the limit of 20000",
    7: "missing_instruction",
}


def _mixed_file(path: Path) -> Path:
    return _jsonl(
        path,
        [
            {"instruction": "Name three rivers in Europe.", "topic": "geo"},
            {"instruction": " \t \n ", "topic": "geo"},
            {"instruction": "Name three rivers in Europe.", "topic": "geo"},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hello."}]},
            {"instruction": "x" * MEGABYTE, "topic": "big"},
            {"instruction": "Which lake is the deepest?", "topic": "geo"},
            {"topic": "no instruction in this row"},
            {"messages": [{"role": "user", "content": "Chat prompt: name a mountain."}]},
        ],
    )


def test_bad_rows_are_quarantined_with_reason_and_never_sent(tmp_path: Path) -> None:
    source = _mixed_file(tmp_path / "prompts.jsonl")
    with stub_openai() as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=8, max_failure_rate=1.0)
        assert run_partition(settings, PARTITION).success
        sizes = list(server.requests)

    prompts = read_stage(settings.storage_dir, "prompts", PARTITION)
    assert prompts.height == 8
    by_line = {int(r["source_ref"].rsplit(":", 1)[1]): r for r in prompts.to_dicts()}
    for line, row in by_line.items():
        if line in BAD_ROWS:
            assert (row["status"], row["failed_stage"]) == ("failed", "prompts"), line
            assert row["reason"] == BAD_ROWS[line].format(path=source), line
        else:
            assert row["status"] == "ok", row
    ok = sum(r["status"] == "ok" for r in by_line.values())
    assert len(sizes) == ok * (len(GENERATORS) + 1), "a quarantined row was sent to a model"
    assert max(sizes) < 50_000
    quarantined = prompts.filter(pl.col("status") == "failed").select("prompt_id", "reason")
    for stage in PIPELINE_STAGES[2:]:
        frame = read_stage(settings.storage_dir, stage, PARTITION)
        carried = frame.filter(pl.col("failed_stage") == "prompts").select("prompt_id", "reason")
        assert carried.sort("reason").equals(quarantined.sort("reason")), stage


def test_repeated_prompts_and_rows_without_text_have_unique_row_ids_joining_one_to_one(tmp_path: Path) -> None:
    river = "Name three rivers in Europe."
    source = _jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"instruction": river},
            {"topic": "no instruction"},
            {"instruction": river},
            {"instruction": river.upper()},
            {"topic": "no instruction either"},
            {"instruction": "Which lake is the deepest?"},
            {"instruction": "Cafe\u0301 au lait?"},
            {"instruction": f"\u200b{river}"},
        ],
    )
    partitions = ("batch-00000", "batch-00001")
    with stub_openai() as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=4, max_failure_rate=1.0)
        for partition in partitions:
            assert run_partition(settings, partition).success

    prompts = pl.concat([read_stage(settings.storage_dir, "prompts", p) for p in partitions])
    assert prompts["row_id"].to_list() == [f"batch-0000{i // 4}#{i % 4}" for i in range(8)]
    assert prompts["duplicate_of"].to_list() == [None, None, "batch-00000#0", "batch-00000#0"] + [None] * 3 + [
        "batch-00000#0"
    ]
    assert prompts["prompt_id"].n_unique() < prompts.height  # shared by repeats and by rows without text
    for partition in partitions:
        batch = read_stage(settings.storage_dir, "prompts", partition).select("row_id", "prompt_id", "status")
        for stage in PIPELINE_STAGES[1:]:
            frame = read_stage(settings.storage_dir, stage, partition)
            assert frame["row_id"].null_count() == 0, stage
            per_row = frame.filter(pl.col("model").is_not_null()) if stage == "generations_by_model" else frame
            keys = ["row_id", "model"] if stage == "generations_by_model" else ["row_id"]
            assert not per_row.select(keys).is_duplicated().any(), stage
            assert set(frame["row_id"]) == set(batch["row_id"]), stage
            joined = batch.join(frame.unique("row_id", keep="first"), on="row_id", how="left", suffix="_stage")
            assert joined["prompt_id"].eq_missing(joined["prompt_id_stage"]).all(), stage
            failed_here = joined.filter(pl.col("status") == "failed")
            assert (failed_here["status_stage"] == "failed").all(), stage


def test_oversized_prompt_allowed_by_config_is_refused_by_endpoint_and_recorded(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "prompts.jsonl",
        [{"instruction": "Name a river."}, {"instruction": "y" * MEGABYTE}, {"instruction": "Name a lake."}],
    )
    with stub_openai(max_body=100_000) as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=3, max_failure_rate=1.0)
        settings = settings.model_copy(
            update={"source": settings.source.model_copy(update={"max_prompt_chars": 2 * MEGABYTE})}
        )
        assert run_partition(settings, PARTITION).success
        refused = [s for s in server.requests if s > 100_000]

    assert len(refused) == len(GENERATORS), "a 400 must not be retried"
    gens = read_stage(settings.storage_dir, "generations_by_model", PARTITION)
    big = gens.filter(pl.col("prompt_id") == read_stage(settings.storage_dir, "prompts", PARTITION)["prompt_id"][1])
    assert big.height == len(GENERATORS)
    for row in big.to_dicts():
        assert (row["status"], row["failed_stage"], row["attempts"]) == ("failed", "generations_by_model", 1)
        assert row["reason"].startswith("http_error: HTTP 400: request body of")
    pairs = read_stage(settings.storage_dir, "dpo_pairs", PARTITION)
    assert pairs.filter(pl.col("status") == "ok").height == 2
    assert (
        pairs.filter(pl.col("status") == "failed")["reason"]
        .to_list()[0]
        .startswith("no_answer: gen-a: http_error: HTTP 400")
    )


def test_judge_giving_the_wrong_number_of_ratings_fails_the_row_with_its_raw_text(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 3)
    with stub_openai(drop_verdicts=1) as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=3, max_failure_rate=1.0)
        assert run_partition(settings, PARTITION).success

    ratings = read_stage(settings.storage_dir, "ratings", PARTITION)
    assert ratings.height == 3
    for row in ratings.to_dicts():
        assert (row["status"], row["failed_stage"]) == ("failed", "ratings")
        assert row["reason"].startswith("judge_unparseable: ")
        assert "expected keys ['answer_1', 'answer_2'], found ['answer_1']" in row["reason"]
        assert row["scores"] == [None, None]
        (judgement,) = row["judgements"]
        assert json.loads(judgement["raw_text"]).keys() == {"answer_1"}
        assert judgement["attempts"] == 2 and judgement["ratings"] == [None, None]
    pairs = read_stage(settings.storage_dir, "dpo_pairs", PARTITION)
    assert pairs["status"].to_list() == ["failed"] * 3 and set(pairs["failed_stage"]) == {"ratings"}
    assert pairs["chosen"].is_null().all()


# ---------------------------------------------------------------- configuration and endpoints


def test_config_naming_an_unknown_endpoint_is_rejected_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "pref_assets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "endpoints": [{"name": "local-vllm", "base_url": NOWHERE}],
                "generators": [
                    {"name": "a", "endpoint": "local-vllm", "model": "m"},
                    {"name": "b", "endpoint": "local-vllm", "model": "m"},
                ],
                "judge": {"name": "judge", "endpoint": "hf-router", "model": "big-judge"},
            }
        )
    )
    with pytest.raises(SettingsError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert str(config) in message
    assert "model 'judge' names unknown endpoint 'hf-router'; known: ['local-vllm']" in message


def test_unreachable_endpoint_fails_the_run_naming_the_endpoint(tmp_path: Path) -> None:
    # A parked endpoint is not retried by Dagster's step retry policy: the breaker would still be open.
    started = time.monotonic()
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 8)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    settings = fake_settings(url, tmp_path / "store", source, batch_size=8, name="offline-vllm")
    result = run_partition(settings, PARTITION, raise_on_error=False)
    assert not result.success
    messages = " ".join(failure_messages(result))
    # At least the breaker's threshold (25); attempts already in flight when it opens add to the count.
    parked = re.search(r"endpoint\(s\) offline-vllm: endpoint parked after (\d+) failed attempts in a row", messages)
    assert parked and int(parked.group(1)) >= 25
    assert "ConnectError" in messages
    assert not (tmp_path / "store" / "generations_by_model").exists()
    assert time.monotonic() - started < 20


def test_bad_file_loses_nothing_already_materialized(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 8)
    store = tmp_path / "store"
    with run_fake_openai(seed=2) as server:
        settings = fake_settings(server.base_url, store, source, batch_size=4)
        defs_job = build_definitions(settings).resolve_job_def(JOB_NAME)
        instance = dg.DagsterInstance.ephemeral()
        first = defs_job.execute_in_process(partition_key=PARTITION, instance=instance)
        assert first.success
        before = {p: p.read_bytes() for p in sorted(store.rglob("*.parquet"))}
        # every pipeline stage's file, beside those of review and the published set, which must not change either
        assert {store / stage / f"{PARTITION}.parquet" for stage in PIPELINE_STAGES} <= set(before)

        with source.open("a") as handle:
            handle.write('{"instruction": "half a line\n')
        for partition in ("batch-00001", PARTITION):
            result = defs_job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
            assert not result.success
            assert any(f"{source}:9: malformed JSON" in m for m in failure_messages(result))

    assert {p: p.read_bytes() for p in sorted(store.rglob("*.parquet"))} == before
    latest = instance.get_latest_materialization_event(dg.AssetKey("dpo_pairs"))
    assert latest is not None and latest.run_id == first.run_id
    assert read_stage(store, "dpo_pairs", PARTITION).height == 4


def test_a_batch_the_shrunk_source_no_longer_covers_fails_instead_of_writing_nothing(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 8)
    settings = fake_settings(NOWHERE, tmp_path / "store", source, batch_size=4)
    job = build_definitions(settings).resolve_job_def(JOB_NAME)  # two batches listed while the file had 8 rows
    write_prompts(source, 3)
    result = job.execute_in_process(
        partition_key="batch-00001",
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        asset_selection=[dg.AssetKey("prompts")],
    )
    assert not result.success
    messages = " ".join(failure_messages(result))
    assert "batch-00001 covers rows 5-8, but the source now has 3 rows" in messages
    assert not (tmp_path / "store" / "prompts").exists()
