"""Pipeline settings for runs against the fake OpenAI-compatible server: two generators and a judge."""

from __future__ import annotations

from pathlib import Path

import yaml

from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings


def fake_settings(base_url: str, storage: Path, batch_size: int = 8, batches: int = 1) -> Settings:
    """Return settings for two generators and a judge on the fake server, ``batches`` batches of embedded prompts."""
    return Settings(
        storage_dir=str(storage),
        batch_size=batch_size,
        source=SourceSettings(limit=batch_size * batches),
        endpoints=[EndpointSettings(name="fake", base_url=base_url, structured_output="json_schema")],
        generators=[
            ModelSettings(name="a", endpoint="fake", model="model-a", params={"temperature": 0.2}),
            ModelSettings(name="b", endpoint="fake", model="model-b", params={"temperature": 0.9}),
        ],
        judge=JudgeSettings(name="judge", endpoint="fake", model="judge", max_reasks=0),
    )


def write_settings(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as a pref_assets.yaml and return its path."""
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return path
