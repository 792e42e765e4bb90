"""Candidates, principles and the judge panel in the configuration: defaults, the panel property, and mistakes
refused at load naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pref_assets.core.principles import BUILT_IN
from pref_assets.settings import ModelSettings, Settings, SettingsError, load_settings

LOCAL = {"name": "local", "base_url": "http://127.0.0.1:8000/v1"}


def _load(tmp_path: Path, **fields: Any) -> Settings:
    document = {
        "storage_dir": str(tmp_path / "store"),
        "endpoints": [LOCAL],
        "generators": [{"name": n, "endpoint": "local", "model": "m"} for n in "ab"],
        "judge": {"name": "j", "endpoint": "local", "model": "m"},
    } | fields
    path = tmp_path / "pref_assets.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in document.items() if v is not None}), encoding="utf-8")
    return load_settings(path)


def _generator(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "endpoint": "local", "model": "m"} | extra


def _judge(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "endpoint": "local", "model": "m"} | extra


def test_defaults_keep_one_answer_per_generator_no_principles_and_one_judge(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert [g.num_generations for g in settings.generators] == [1, 1] and settings.candidates_per_prompt == 2
    assert settings.principle_texts() == {} and [j.name for j in settings.panel] == ["j"]
    assert settings.min_judges == 1 and settings.judge.max_answers_per_call == 8
    assert [j.name for j in Settings().panel] == ["smollm2-judge"]


def test_a_plain_model_is_a_generator_with_the_defaults() -> None:
    plain = [ModelSettings(name=n, endpoint="embedded", model="m") for n in "ab"]
    assert [g.num_generations for g in Settings(generators=plain).generators] == [1, 1]


def test_a_panel_replaces_the_judge_and_its_first_judge_is_the_judge(tmp_path: Path) -> None:
    settings = _load(tmp_path, judge=None, judges=[_judge("j1"), _judge("j2", aspects=["honesty"])], min_judges=2)
    assert [j.name for j in settings.panel] == ["j1", "j2"] and settings.judge.name == "j1"


def test_candidates_and_principles(tmp_path: Path) -> None:
    generators = [{"name": "a", "endpoint": "local", "model": "m", "num_generations": 3, "system_prompt": "Be kind."},
                  {"name": "b", "endpoint": "local", "model": "m"}]  # fmt: skip
    principles = ["honesty", {"name": "terse", "text": "Answer in one line."}]
    settings = _load(tmp_path, generators=generators, principles=principles)
    assert settings.candidates_per_prompt == 4
    assert settings.principle_texts() == {"honesty": BUILT_IN["honesty"], "terse": "Answer in one line."}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"judges": [_judge("j1")]}, "either judge .* or judges"),
        ({"judge": None, "judges": [_judge("j1"), _judge("j1")]}, "judge names must be unique"),
        ({"judge": None, "judges": []}, "judges: .*at least 1"),
        ({"min_judges": 2}, "min_judges is 2, but the panel has 1"),
        ({"judge": None, "judges": [_judge("j1", endpoint="nowhere")]}, "judges.0.endpoint: .*unknown endpoint"),
        ({"principles": ["kindness"]}, "unknown principle 'kindness'"),
        ({"principles": ["honesty", {"name": "honesty", "text": "x"}]}, "principle names must be unique"),
        ({"generators": [_generator("a", num_generations=0), _generator("b")]}, "num_generations"),
        ({"generators": [_generator("a", params={"n": 4}), _generator("b")]}, "params.n is not supported"),
        ({"judge": _judge("j", max_answers_per_call=1)}, "max_answers_per_call"),
    ],
)
def test_mistakes_are_refused_at_load(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        _load(tmp_path, **fields)
