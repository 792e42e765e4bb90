"""Secrets: an LLM key and an Argilla key, read from the environment, are used and never written down.

The run goes to a fake LLM server that requires the key (so the key is really sent) and to an
Argilla URL nobody listens on (so ``argilla_records`` fails with an error). Afterwards neither key is
in any log record, asset metadata, stored run, Parquet file, cache, compute log, or captured output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from reliability_support import (
    closed_port,
    failure_messages,
    fake_settings,
    read_stage,
    run_partition,
    scan_for,
    write_prompts,
)

from pref_assets.settings import ArgillaSettings, SettingsError, load_settings
from pref_assets.testing.fake_openai import run_fake_openai

LLM_KEY = "sk-reliability-llm-4e7a91c0d2b8"
ARGILLA_KEY = "argilla-reliability-key-93f0c5a6e1"
PARTITION = "batch-00000"


def test_keys_appear_in_no_log_metadata_file_or_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RELIABILITY_LLM_KEY", LLM_KEY)
    monkeypatch.setenv("RELIABILITY_ARGILLA_KEY", ARGILLA_KEY)
    caplog.set_level(logging.DEBUG)
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 6)
    argilla_url = f"http://127.0.0.1:{closed_port()}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    with run_fake_openai(api_key=LLM_KEY, seed=4) as server:
        settings = fake_settings(
            server.base_url,
            tmp_path / "store",
            source,
            batch_size=6,
            endpoint={"api_key_env": "RELIABILITY_LLM_KEY"},
            argilla=ArgillaSettings(
                url=argilla_url, api_key_env="RELIABILITY_ARGILLA_KEY", max_attempts=2, timeout_s=2
            ),
        )
        result = run_partition(settings, PARTITION, instance, raise_on_error=False)
        assert server.stats()["by_status"].get("401", 0) == 0
    captured = capfd.readouterr()

    # The key was used: the server refuses requests without it, and every answer came back.
    gens = read_stage(settings.storage_dir, "generations_by_model", PARTITION)
    assert gens.height == 12 and gens.filter(pl.col("status") == "ok").height == 12
    # Argilla was configured with its key and failed with a message naming the URL, not the key.
    assert not result.success
    argilla_failure = " ".join(m for m in failure_messages(result) if "Argilla" in m)
    assert argilla_url in argilla_failure

    for key in (LLM_KEY, ARGILLA_KEY):
        assert key not in argilla_failure
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and key not in repr(run.run_config) and key not in repr(run.tags)
        for record in instance.all_logs(result.run_id):
            assert key not in repr(record), record.dagster_event_type
        for event in result.get_asset_materialization_events():
            assert key not in repr(event.materialization.metadata)
        assert key not in captured.out and key not in captured.err
        assert all(key not in r.getMessage() and key not in repr(r.args) for r in caplog.records)
        assert scan_for(key, [tmp_path]) == [], "key written to disk"

    # The scan itself finds a key where there is one.
    control = tmp_path.parent / f"{tmp_path.name}-control"
    control.mkdir()
    (control / "leak.bin").write_bytes(b"\x00prefix" + LLM_KEY.encode() + b"suffix")
    assert scan_for(LLM_KEY, [control]) == [str(control / "leak.bin")]
    compute_logs = [p for p in home.rglob("compute_logs/*") if p.stat().st_size > 0]
    assert compute_logs, "no compute log was captured, so none was checked"


def test_a_credential_in_a_base_url_is_refused_without_being_repeated(tmp_path: Path) -> None:
    config = tmp_path / "pref_assets.yaml"
    config.write_text(
        "endpoints:\n  - {name: remote, base_url: 'https://user:hunter2secret@llm.example.com/v1'}\n"
        "generators:\n  - {name: a, endpoint: remote, model: m}\n  - {name: b, endpoint: remote, model: n}\n"
        "judge: {name: j, endpoint: remote, model: m}\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert "endpoints.0: Value error, endpoint remote: base_url holds a user name or password" in message
    assert "api_key_env" in message and "hunter2secret" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
