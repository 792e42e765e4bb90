"""Secrets: an LLM key, an Argilla key and a Hugging Face token, read from the environment, are used and never
written down.

The first run goes to a fake LLM server that requires the key (so the key is really sent) and to an
Argilla URL nobody listens on (so ``argilla_records`` fails with an error). Afterwards neither key is
in any log record, asset metadata, stored run, Parquet file, cache, compute log, or captured output.

The second run goes to servers that echo the request headers back: the fake LLM server in its answers and its
errors (verbatim, lower-cased, the key straddling character 300), and an Argilla and a Hub endpoint that refuse
every request quoting the headers. No form of any key is in anything the run leaves.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from reliability_support import (
    ROOT,
    closed_port,
    driver_env,
    failure_messages,
    fake_settings,
    read_stage,
    run_partition,
    scan_for,
    write_prompts,
)

from pref_assets.definitions import build_definitions
from pref_assets.settings import ArgillaSettings, PublishSettings, SettingsError, load_settings
from pref_assets.testing.echo_server import refusing_server
from pref_assets.testing.fake_openai import run_fake_openai
from pref_assets.testing.fake_pipeline import write_settings

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


HF_TOKEN = "hf_ReliabilityHubToken7c41e9a0b3d6f2"
PREFIX = 12  # a cut that left this much of a key (or more) would leak it


def _secret_header_values(headers: Any) -> list[str]:
    values = [str(headers.get("x-argilla-api-key") or ""), str(headers.get("authorization") or "")]
    return [v.removeprefix("Bearer ") for v in values if v]


def _echoed_refusal(headers: Any) -> str:
    """Argilla and the Hub as some proxies and debug servers behave: the request headers quoted, the secret values
    repeated back to back (so that any cut falls inside one), verbatim and lower-cased."""
    listing = "; ".join(f"{k}: {v}" for k, v in headers.items())
    secrets = "".join(_secret_header_values(headers)) * 40
    return f"rejected: {secrets} (headers: {listing}; normalised: {listing.lower()})"


def _readable(path: Path) -> str:
    """Return a file's content as text: Parquet (compressed pages) and SQLite (values split over pages) decoded."""
    raw = path.read_bytes()
    if raw.startswith(b"PAR1"):
        return pl.read_parquet(path).write_ndjson() + raw.decode("latin-1")
    if raw.startswith(b"SQLite format 3\x00"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return "\n".join(db.iterdump()) + raw.decode("latin-1")
    return raw.decode("latin-1")


def _leaks(keys: Iterable[str], texts: dict[str, str]) -> list[tuple[str, str]]:
    """Return (where, form) for every key found verbatim, in any letter case, or by its first PREFIX characters."""
    found = []
    for where, text in texts.items():
        lowered = text.lower()
        found += [(where, key[:PREFIX]) for key in keys if key[:PREFIX].lower() in lowered]
    return found


def _files(*roots: Path) -> dict[str, str]:
    return {str(p): _readable(p) for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_keys_echoed_back_by_every_server_are_masked_in_everything_the_run_leaves(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    keys = (LLM_KEY, ARGILLA_KEY, HF_TOKEN)
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, 8)
    home, store = tmp_path / "dagster_home", tmp_path / "store"
    home.mkdir()
    env = driver_env() | {
        "RELIABILITY_LLM_KEY": LLM_KEY,
        "RELIABILITY_ARGILLA_KEY": ARGILLA_KEY,
        "RELIABILITY_HF_TOKEN": HF_TOKEN,
        "DAGSTER_HOME": str(home),
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    with (
        run_fake_openai(api_key=LLM_KEY, echo_headers=True, fail_5xx=0.3, seed=5) as llm,
        refusing_server(_echoed_refusal) as echoing,
    ):
        settings = fake_settings(
            llm.base_url,
            store,
            source,
            batch_size=8,
            endpoint={"api_key_env": "RELIABILITY_LLM_KEY", "max_attempts": 1},
            max_failure_rate=1.0,
            argilla=ArgillaSettings(url=echoing, api_key_env="RELIABILITY_ARGILLA_KEY", max_attempts=1),
            publish=PublishSettings(repo_id="me/prefs", token_env="RELIABILITY_HF_TOKEN", asset="dpo_pairs"),
        )
        env |= {"PREF_ASSETS_CONFIG": str(write_settings(settings, tmp_path / "pref_assets.yaml"))}
        env |= {"HF_ENDPOINT": echoing}
        cli = subprocess.run(
            [sys.executable, "-m", "pref_assets.cli", "run", "--partition", PARTITION],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        echoed = llm.stats()["hostile"].get("echo_headers", 0)
        publish = _publish(settings, home, env)
    captured = capfd.readouterr()

    # The servers did echo every key back, and the run stored what they said, masked.
    assert cli.returncode == 1 and echoed >= 16, (cli.returncode, echoed, cli.stderr[-3000:])
    gens = read_stage(store, "generations_by_model", PARTITION)
    texts = gens["generation"].drop_nulls().to_list()
    reasons = gens["reason"].drop_nulls().to_list()
    assert texts and all("Bearer ***" in t and "bearer ***" in t for t in texts)
    assert any("HTTP 5" in r for r in reasons) and all("***" in r for r in reasons if "HTTP 5" in r)
    assert "Argilla at " in cli.stderr and "HTTP 400: " in cli.stderr and "rejected: ***" in cli.stderr
    assert f"not pushed to me/prefs at {echoing}" in publish and "***" in publish

    outputs = {"cli stdout": cli.stdout, "cli stderr": cli.stderr, "test output": captured.out + captured.err}
    outputs |= {"publish failure": publish} | _files(tmp_path)
    assert any("dagster_home" in p and "compute_logs" in p for p in outputs), "no compute log was checked"
    assert any(p.endswith(".db") and "dagster_home" in p for p in outputs), "no event log database was checked"
    assert any(p.endswith("requests.sqlite") for p in outputs), "no request cache was checked"
    assert _leaks(keys, outputs) == []

    # Stage files, the cache and the published copy are private to the user.
    private = [store / "generations_by_model" / f"{PARTITION}.parquet", store / "cache" / "requests.sqlite",
               store / "published" / "data" / "train.parquet"]  # fmt: skip
    assert [oct(p.stat().st_mode & 0o777) for p in private] == ["0o600"] * 3
    assert oct(store.stat().st_mode & 0o777) == "0o700"

    # The scan finds every form of a key where there is one, in Parquet and in SQLite too.
    control = tmp_path.parent / f"{tmp_path.name}-control"
    control.mkdir()
    pl.DataFrame({"t": ["x" * 5000 + LLM_KEY.upper()]}).write_parquet(control / "a.parquet")
    with sqlite3.connect(control / "b.sqlite") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", ("y" * 9000 + "Bearer " + ARGILLA_KEY[:PREFIX],))
    assert sorted(_leaks(keys, _files(control))) == [
        (str(control / "a.parquet"), LLM_KEY[:PREFIX]),
        (str(control / "b.sqlite"), ARGILLA_KEY[:PREFIX]),
    ]


def _publish(settings: Any, home: Path, env: dict[str, str]) -> str:
    """Materialize ``preference_dataset`` in the same Dagster home; return its failure message."""
    saved = dict(os.environ)
    os.environ.update({k: env[k] for k in ("RELIABILITY_HF_TOKEN", "HF_ENDPOINT", "HF_HOME")})
    try:
        job = build_definitions(settings).resolve_implicit_global_asset_job_def()
        instance = dg.DagsterInstance.local_temp(str(home))
        result = job.execute_in_process(
            partition_key=PARTITION,
            instance=instance,
            asset_selection=[dg.AssetKey("preference_dataset")],
            raise_on_error=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert not result.success
    messages = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.event_type == dg.DagsterEventType.STEP_FAILURE else None
        while error is not None:  # the step's error, then what caused it
            messages.append(error.to_string())
            error = error.cause
    return "\n".join(messages)
