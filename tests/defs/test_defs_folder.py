"""dg's defs folder: module-level definitions (or a component's defs.yaml) under a defs package are found, so the
code location loads them beside the builders' definitions; a folder of builders only costs nothing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from pref_assets.definitions import has_module_level_definitions


def _package(root: Path, name: str, files: dict[str, str]) -> object:
    for path, text in {"__init__.py": "", "sub/__init__.py": "", **files}.items():
        (root / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / name / path).write_text(text)
    return importlib.import_module(name)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("defs_probe_")]:
        del sys.modules[name]


def test_builders_only_are_not_module_level_definitions(root: Path) -> None:
    builder = "import dagster as dg\n\ndef build():\n    @dg.asset\n    def a() -> None: ...\n    return a\n"
    assert not has_module_level_definitions(_package(root, "defs_probe_builders", {"sub/b.py": builder}))


def test_a_module_level_asset_in_a_subfolder_is_found(root: Path) -> None:
    asset = "import dagster as dg\n\n@dg.asset\ndef extra() -> None: ...\n"
    assert has_module_level_definitions(_package(root, "defs_probe_asset", {"sub/extra.py": asset}))


def test_a_component_folder_is_found(root: Path) -> None:
    assert has_module_level_definitions(_package(root, "defs_probe_yaml", {"sub/defs.yaml": "type: x\n"}))
