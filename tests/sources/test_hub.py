from __future__ import annotations

import time

import pytest

from pref_assets.core.prompts import PromptSourceError
from pref_assets.settings import SourceSettings
from pref_assets.sources import read_source


def test_unreachable_hub_fails_fast_and_names_alternatives(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(
        PromptSourceError,
        match=r"argilla/10Kprompts-mini.*unreachable.*no cached copy.*kind: files.*embedded",
    ):
        read_source(SourceSettings(kind="hub", repo_id="argilla/10Kprompts-mini"))
    assert time.monotonic() - started < 10


def test_offline_mode_fails_fast_and_names_alternatives(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import datasets  # imported before the variables are set, as in a long-lived process

    assert datasets
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(PromptSourceError, match=r"cannot load 'argilla/10Kprompts-mini'.*unreachable.*embedded"):
        read_source(SourceSettings(kind="hub", repo_id="argilla/10Kprompts-mini"))
    assert time.monotonic() - started < 15


def test_hub_source_needs_a_repo() -> None:
    with pytest.raises(PromptSourceError, match="repo_id"):
        read_source(SourceSettings(kind="hub"))
