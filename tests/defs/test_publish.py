"""The final set is gathered from every batch, written locally with a card, and pushed only when configured."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pref_assets.definitions import build_definitions
from pref_assets.hub_upload import push
from pref_assets.settings import EndpointSettings, GeneratorSettings, JudgeSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai


def _settings(base_url: str, store: Path, **publish: object) -> Settings:
    return Settings(
        storage_dir=str(store), batch_size=6, source=SourceSettings(limit=12),
        endpoints=[EndpointSettings(name="f", base_url=base_url, structured_output="json_schema")],
        generators=[GeneratorSettings(name=n, endpoint="f", model=f"org/{n}") for n in ("a", "b")],
        judge=JudgeSettings(name="j", endpoint="f", model="org/judge", aspects=["helpfulness", "honesty"]),
        publish={"repo_id": "me/prefs", **publish},
    )  # fmt: skip


def test_both_batches_are_published_locally_with_a_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_sentinel_token")
    with run_fake_openai(seed=2) as server:
        defs = build_definitions(_settings(server.base_url, tmp_path))
        instance = dg.DagsterInstance.ephemeral()
        for batch in ("batch-00000", "batch-00001"):
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                partition_key=batch, instance=instance
            )
            assert result.success
    published = tmp_path / "published"
    data = pl.read_parquet(published / "data" / "train.parquet")
    pairs = [pl.read_parquet(tmp_path / "preference_pairs" / f"batch-0000{i}.parquet") for i in (0, 1)]
    assert data.height == sum(int((p["status"] == "ok").sum()) for p in pairs) > 0
    assert set(data["batch"]) == {"batch-00000", "batch-00001"}
    assert data["chosen"][0][-1]["role"] == "assistant" and data["prompt"][0][0]["role"] == "user"
    card = (published / "README.md").read_text()
    for needle in (
        "`org/a`",
        "`org/b`",
        "`org/judge`",
        "`helpfulness`, `honesty`",
        f"{data.height} preference pairs",
        "from 12 prompts",
        "batch-00000, batch-00001",
        "judge ",
    ):
        assert needle in card
    [event] = [e for e in result.get_asset_materialization_events()
               if e.event_specific_data.materialization.asset_key == dg.AssetKey("preference_dataset")]  # fmt: skip
    metadata = event.event_specific_data.materialization.metadata
    assert "unreachable" in metadata["hub"].value and metadata["pushed"].value is False
    assert "hf_sentinel_token" not in repr(metadata)
    columns = metadata["dagster/column_schema"].schema.columns
    assert [c.name for c in columns] == data.columns and all(c.description for c in columns)


@pytest.mark.parametrize(
    ("repo", "token", "message"),
    [(None, "t", "repo_id is not set"), ("me/x", None, "no Hugging Face token")],
)
def test_push_is_skipped_with_a_reason(tmp_path: Path, repo: str | None, token: str | None, message: str) -> None:
    pushed, where = push(tmp_path, repo, token, private=True)
    assert not pushed and message in where
