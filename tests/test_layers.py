"""The import rules between layers, read from the source (nothing is imported).

- ``core`` is pure: no Dagster, no HTTP, no frames (it works on rows; asset bodies convert at the edges), and
  none of the project's outer layers (clients, defs, settings, sources).
- ``clients`` talk HTTP and know nothing of Dagster or of the settings file: resources in ``defs`` configure them.
- No product module imports the test servers in ``pref_assets.testing`` (left out of the wheel).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pref_assets"
TESTING = "pref_assets.testing"
# layer -> modules (and their submodules) it must not import
FORBIDDEN = {
    "pref_assets.core": (
        "dagster",
        "httpx",
        "polars",
        "pref_assets.clients",
        "pref_assets.defs",
        "pref_assets.settings",
        "pref_assets.sources",
    ),
    "pref_assets.clients": ("dagster", "pref_assets.defs", "pref_assets.settings"),
    "pref_assets": (TESTING,),
}


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, where it is imported."""

    module: str
    line: int


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """Return the dotted name of the module at ``path`` under the package ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[Import]:
    """Return every module ``path`` imports, anywhere in it (functions and ``TYPE_CHECKING`` blocks too), with
    relative imports resolved; ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            found += [Import(base, node.lineno)]
            found += [Import(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
        elif _dynamic_import(node):
            found.append(Import(node.args[0].value, node.lineno))
    return found


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _dynamic_import(node: ast.AST) -> bool:
    """``importlib.import_module("x")`` or ``__import__("x")`` with a literal name."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return called in ("import_module", "__import__") and isinstance(node.args[0].value, str)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path = PACKAGE) -> list[str]:
    """Return one line per forbidden import under ``root``: ``file:line: module imports name (rule)``."""
    found: dict[tuple[str, str, str], str] = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if _within(name, TESTING):
            continue
        rules = [(layer, banned) for layer, bans in FORBIDDEN.items() if _within(name, layer) for banned in bans]
        # the shortest name per line and rule: ``from a.b import C`` is reported as ``a.b``
        for imported in sorted(imports(path, root), key=lambda i: len(i.module)):
            for layer, banned in rules:
                where = f"{path.relative_to(root.parent)}:{imported.line}"
                rule = f"{layer} must not import {banned}"
                if _within(imported.module, banned) and (where, layer, banned) not in found:
                    found[where, layer, banned] = f"{where}: {name} imports {imported.module} ({rule})"
    return sorted(found.values())


def test_every_layer_keeps_to_its_imports() -> None:
    problems = violations()
    assert not problems, "imports across the layer rules:\n" + "\n".join(problems)


def test_the_rules_see_every_module_and_the_imports_they_forbid() -> None:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert {"pref_assets.core.rating", "pref_assets.clients.llm", "pref_assets.defs.resources"} <= modules
    clients = [i.module for i in imports(PACKAGE / "clients" / "llm.py")]
    assert "httpx" in clients and "pref_assets.clients.retry.RetryPolicy" in clients
    resources = [i.module for i in imports(PACKAGE / "defs" / "resources.py")]
    assert "dagster" in resources and "pref_assets.settings" in resources


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import dagster as dg\n", ["dagster"]),
        ("from httpx import AsyncClient\n", ["httpx", "httpx.AsyncClient"]),
        ("from .. import settings\n", ["pref_assets", "pref_assets.settings"]),
        ("from ..defs.resources import LLMResource\n", ["pref_assets.defs.resources"]),
        ("def f():\n    import polars\n", ["polars"]),
        ("import importlib\nimportlib.import_module('pref_assets.testing.fake_openai')\n",
         ["importlib", "pref_assets.testing.fake_openai"]),
    ],
)  # fmt: skip
def test_imports_are_read_wherever_and_however_they_are_written(tmp_path: Path, source: str, found: list[str]) -> None:
    module = tmp_path / "pref_assets" / "core" / "m.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    names = [i.module for i in imports(module, tmp_path / "pref_assets")]
    assert all(any(n.startswith(f) for n in names) for f in found), names


def test_the_wheel_leaves_the_test_servers_out() -> None:
    import tomllib

    wheel = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]
    assert "pref_assets/testing" in wheel["wheel"]["exclude"]
