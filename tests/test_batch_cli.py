"""``pref-assets batches``: list the jobs a step submitted, cancel one, poll, and resubmit what the cancel left."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest

from pref_assets.cli import main
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.testing.fake_openai import run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings, write_settings


def _poll_until(capsys: pytest.CaptureFixture[str], text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert main(["batches", "poll"]) == 0
        assert main(["batches", "list"]) == 0
        out = capsys.readouterr().out
        if text in out:
            return out
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never listed")


def test_list_cancel_poll_resubmit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    knobs = {"validating_s": 0.1, "in_progress_s": 60.0, "finalizing_s": 0.1}
    with run_fake_openai(batch=json.dumps(knobs)) as server:
        settings = fake_settings(server.base_url, tmp_path / "data", batch_size=4)
        endpoint = settings.endpoints[0].model_copy(update={"mode": "batch"})
        settings = settings.model_copy(update={"endpoints": [endpoint]})
        monkeypatch.setenv("PREF_ASSETS_CONFIG", str(write_settings(settings, tmp_path / "pref_assets.yaml")))
        job = build_definitions(settings).resolve_job_def(JOB_NAME)
        assert job.execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral()).success
        capsys.readouterr()

        assert main(["batches", "list"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert len(listed) == 2 and "submitting" not in listed[1]
        job_key = listed[1].split()[0]
        assert "generations_by_model/batch-00000" in listed[1] and " 8 " in listed[1]

        assert main(["batches", "cancel", job_key]) == 0
        assert "cancelling" in capsys.readouterr().out
        cancelled = _poll_until(capsys, "cancelled")
        assert "collected" in cancelled

        assert main(["batches", "resubmit"]) == 0
        assert "8 failed request(s) resubmitted in 1 job(s)" in capsys.readouterr().out
        assert main(["batches", "list"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 3

        assert main(["batches", "cancel", "no-such-job"]) == 2
        assert "no batch job no-such-job" in capsys.readouterr().err
