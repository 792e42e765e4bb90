"""Test configuration: the suite never reads a developer's ``pref_assets.yaml`` or ``$PREF_ASSETS_CONFIG``.

Project modules read their configuration when they are imported (``pref_assets.definitions`` builds its
definitions at import), and pytest imports test modules, so project modules too, before any fixture runs.
So the explicit test configuration below is named in ``$PREF_ASSETS_CONFIG`` here, at this module's import,
which pytest does before it collects a test file: a ``./pref_assets.yaml`` in the working directory is never read.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
SERVICES = Path(__file__).resolve().parent / "orchestration" / "orchestration_services.py"

_HOME = Path(tempfile.mkdtemp(prefix="pref-assets-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
TEST_CONFIG = _HOME / "pref_assets.yaml"
TEST_CONFIG.write_text(
    "# The embedded defaults, with storage in a temporary folder.\n"
    f"storage_dir: {json.dumps(str(_HOME / 'pref_data'))}\n",
    encoding="utf-8",
)
os.environ["PREF_ASSETS_CONFIG"] = str(TEST_CONFIG)


@pytest.fixture(autouse=True)
def _test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with the test configuration named, whatever an earlier test set."""
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(TEST_CONFIG))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Debian redis-server started for the module (skipped where none is installed); yields its URL."""
    spec = importlib.util.spec_from_file_location("orchestration_services", SERVICES)
    assert spec is not None and spec.loader is not None
    services = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, services)
    spec.loader.exec_module(services)
    pytest.importorskip("redis")
    try:
        with services.run_redis(tmp_path_factory.mktemp("redis")) as server:
            yield server.url()
    except services.ServiceUnavailable as err:
        pytest.skip(str(err))
