"""What the UI shows, read through Dagster's GraphQL API from the code location the UI loads (workspace.yaml, a
code server process): kinds and owners on every asset, table previews, numbers to plot, named and tagged runs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pref_assets.definitions import build_definitions
from pref_assets.defs.jobs import CONFIG_TAG, JOB_NAME
from pref_assets.settings import load_settings
from pref_assets.testing.fake_openai import run_fake_openai
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

dagster_graphql_utils = pytest.importorskip("dagster_graphql.test.utils")
ROOT = Path(__file__).resolve().parents[2]
BATCH = "batch-00000"
QUERY = """
query {
  assetNodes {
    assetKey { path }
    kinds
    owners { ... on UserAssetOwner { email } ... on TeamAssetOwner { team } }
    assetMaterializations(partitions: ["%s"], limit: 1) {
      metadataEntries {
        label
        __typename
        ... on TableMetadataEntry { table { schema { columns { name } } records } }
        ... on FloatMetadataEntry { floatValue }
      }
    }
  }
  runsOrError { ... on Runs { results { jobName status tags { key value } } } }
}
""" % BATCH  # noqa: UP031 - GraphQL braces


def test_assets_carry_kinds_owners_and_table_metadata_in_the_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_fake_openai(seed=3) as server:
        config = write_settings(fake_settings(server.base_url, tmp_path / "data", batch_size=4), tmp_path / "c.yaml")
        monkeypatch.setenv("PREF_ASSETS_CONFIG", str(config))
        with dg.instance_for_test() as instance:
            job = build_definitions(load_settings()).resolve_job_def(JOB_NAME)
            assert job.execute_in_process(partition_key=BATCH, instance=instance).success
            with dagster_graphql_utils.define_out_of_process_context(
                str(ROOT / "workspace.yaml"), None, instance
            ) as context:
                data = dagster_graphql_utils.execute_dagster_graphql(context, QUERY).data

    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert {"prompts", "ratings", "dpo_pairs", "argilla_records", "preference_dataset"} <= set(nodes)
    for name, node in nodes.items():
        assert "polars" in node["kinds"], name
        assert {"team": "pref-assets"} in node["owners"], name
    assert "openai-compatible" in nodes["ratings"]["kinds"] and "argilla" in nodes["argilla_records"]["kinds"]
    assert "huggingface" in nodes["preference_dataset"]["kinds"]

    def entries(name: str) -> dict[str, dict]:
        [materialization] = nodes[name]["assetMaterializations"]
        return {e["label"]: e for e in materialization["metadataEntries"]}

    pairs = entries("dpo_pairs")["preview"]
    assert pairs["__typename"] == "TableMetadataEntry"
    columns = [c["name"] for c in pairs["table"]["schema"]["columns"]]
    assert columns[:3] == ["prompt", "chosen", "rejected"] and columns[-1] == "prompt_id"
    assert len(pairs["table"]["records"]) == 4
    ratings = entries("ratings")
    assert ratings["rating_distribution"]["__typename"] == "TableMetadataEntry"
    assert "rating_histogram" not in ratings  # one table, not the same counts again as JSON
    for rate in ("tie_rate", "first_position_win_rate"):
        assert ratings[rate]["__typename"] in {"FloatMetadataEntry", "NullMetadataEntry"}
    means = {k: e["floatValue"] for k, e in ratings.items() if k.startswith("rating_mean/")}
    assert set(means) == {"rating_mean/a", "rating_mean/b"} and all(1 <= v <= 5 for v in means.values())
    assert ratings["parse_success_rate"]["__typename"] == "FloatMetadataEntry"
    assert entries("grouped")["configuration"]["__typename"] == "JsonMetadataEntry"

    [run] = data["runsOrError"]["results"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["jobName"] == JOB_NAME and run["status"] == "SUCCESS"
    assert len(tags[CONFIG_TAG]) == 12 and tags["pref_assets/storage"] == str((tmp_path / "data").resolve())
    assert tags["pref_assets/config_file"] == str(config) and tags["pref_assets/generators"] == "a=model-a, b=model-b"
