"""Configuration mistakes are found when the configuration is loaded, naming the field, never the value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pref_assets.settings import CONFIG_ENV, SettingsError, load_settings

SECRET = "sk_live_0123456789abcdefABCDEF"


def _config(tmp_path: Path, **fields: Any) -> Path:
    document = {
        "storage_dir": str(tmp_path / "store"),
        "endpoints": [{"name": "local", "base_url": "http://127.0.0.1:8000/v1"}],
        "generators": [
            {"name": "a", "endpoint": "local", "model": "m"},
            {"name": "b", "endpoint": "local", "model": "m"},
        ],
        "judge": {"name": "j", "endpoint": "local", "model": "m"},
    } | fields
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in document.items() if v is not None}), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    return str(raised.value)


@pytest.mark.parametrize("text", ["", "\n  \n", "# settings to come\n"])
def test_an_empty_config_file_named_explicitly_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = tmp_path / "named.yaml"
    path.write_text(text, encoding="utf-8")
    assert _error(path).startswith(f"{path}: the configuration file is empty")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    with pytest.raises(SettingsError, match="the configuration file is empty"):
        load_settings()


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("http://127.0.0.1:8000/v1/v1", "repeats its version segment (like /v1/v1)"),
        (f"https://api.example.com/v1/v1/?key={SECRET}", "repeats its version segment (like /v1/v1)"),
        (f"http://127.0.0.1:80x0/{SECRET}", "has a port that is not a number from 1 to 65535"),
        ("http://127.0.0.1:99999/v1", "has a port that is not a number from 1 to 65535"),
        ("http://127.0.0.1:0/v1", "has a port that is not a number from 1 to 65535"),
        ("http://:8000/v1", "has no host name"),
        (f"http://local host:8000/v1/{SECRET}", "holds a space or a control character"),
        ("https://api.example.com/v1/chat/completions", "ends in /chat/completions, which the client adds"),
    ],
)
def test_a_base_url_the_client_cannot_use_is_refused_at_load(tmp_path: Path, base_url: str, problem: str) -> None:
    endpoints = [{"name": "local", "base_url": "http://127.0.0.1:8000/v1"}, {"name": "remote", "base_url": base_url}]
    message = _error(_config(tmp_path, endpoints=endpoints))
    assert f"endpoints.1: Value error, endpoint remote: base_url {problem}" in message
    assert SECRET not in message and base_url not in message


def test_a_storage_dir_that_is_a_file_or_under_one_is_refused_at_load(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for storage, problem in [
        (blocker, "is an existing file, not a folder"),
        (blocker / "sub", "cannot be created: part of its path is a file"),
    ]:
        message = _error(_config(tmp_path, storage_dir=str(storage)))
        assert message.endswith(f"invalid configuration:\n  storage_dir: {problem}")


def test_a_storage_dir_that_cannot_be_written_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert _error(_config(tmp_path, storage_dir=str(locked))).endswith("storage_dir: is not writable")
    message = _error(_config(tmp_path, storage_dir=str(locked / "new")))
    assert message.endswith("storage_dir: cannot be created: its parent folder is not writable")
    assert load_settings(_config(tmp_path, storage_dir=str(tmp_path / "fine" / "new"))).storage_dir.endswith("new")


def test_a_judge_left_out_of_a_config_without_its_endpoint_is_named(tmp_path: Path) -> None:
    message = _error(_config(tmp_path, judge=None))
    assert "judge: not configured, and the default judge runs on the 'embedded' endpoint" in message
    assert "known: ['local']" in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"judge": {"name": "j", "endpoint": "hf-router", "model": "m"}}, "judge.endpoint: model 'j' names unknown"),
        (
            {
                "generators": [
                    {"name": "a", "endpoint": "local", "model": "m"},
                    {"name": "b", "endpoint": "x", "model": "m"},
                ]
            },
            "generators.1.endpoint: model 'b' names unknown endpoint 'x'",
        ),
    ],
)
def test_an_unknown_endpoint_is_named_by_its_field(tmp_path: Path, fields: dict[str, Any], expected: str) -> None:
    assert expected in _error(_config(tmp_path, **fields))


def test_the_budget_and_the_cost_report_price_tokens_alike() -> None:
    from dataclasses import replace

    from pref_assets.clients.llm import ChatResult
    from pref_assets.clients.runner import Prices
    from pref_assets.core.calls import Call
    from pref_assets.settings import ModelSettings, Settings

    model = ModelSettings(name="g", endpoint="embedded", model="m", price_input_per_million=3.0,
                          price_output_per_million=15.0)  # fmt: skip
    settings = Settings(generators=[model, model.model_copy(update={"name": "h"})])
    result = ChatResult("x", "stop", prompt_tokens=1000, completion_tokens=200, latency_s=0.1, attempts=1)
    charged = Prices(settings.prices()).cost(Call("embedded", "m", ()), result)
    assert charged == model.cost_usd(1000, 200) == pytest.approx(0.006)
    assert Prices(settings.prices()).cost(Call("embedded", "m", ()), replace(result, cached=True)) == 0.0
