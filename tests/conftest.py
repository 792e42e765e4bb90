from __future__ import annotations

import os

import pytest

os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")


@pytest.fixture(autouse=True)
def _no_project_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read a developer's pref_assets.yaml or $PREF_ASSETS_CONFIG."""
    monkeypatch.delenv("PREF_ASSETS_CONFIG", raising=False)
