from __future__ import annotations

import dagster as dg

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import Settings

CHAIN = ["prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records"]


def _graph(defs: dg.Definitions) -> dict[str, list[str]]:
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): sorted(k.to_user_string() for k in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }


def test_asset_graph_snapshot() -> None:
    assert _graph(build_definitions(Settings())) == {
        "prompts": [],
        "generations_by_model": ["prompts"],
        "grouped": ["generations_by_model", "prompts"],
        "ratings": ["grouped"],
        "dpo_pairs": ["ratings"],
        "argilla_records": ["ratings"],
        "human_feedback": ["argilla_records"],
        "preference_pairs": ["human_feedback", "ratings"],
        "preference_dataset": ["preference_pairs"],
        "judge_calibration": [],
    }


def test_every_asset_is_partitioned_by_batch_and_described() -> None:
    defs = build_definitions(Settings())
    graph = defs.resolve_asset_graph()
    for name in CHAIN:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None
        assert node.partitions_def.get_partition_keys()[0] == "batch-00000"
        assert node.description


def test_every_batch_asset_shows_its_stored_columns_with_their_meaning() -> None:
    from pref_assets.defs import schemas

    graph = build_definitions(Settings()).resolve_asset_graph()
    stored = {
        "prompts": schemas.PROMPTS, "generations_by_model": schemas.GENERATIONS, "grouped": schemas.GROUPED,
        "ratings": schemas.RATINGS, "dpo_pairs": schemas.DPO_PAIRS, "argilla_records": schemas.ARGILLA_RECORDS,
        "human_feedback": schemas.HUMAN_FEEDBACK, "preference_pairs": schemas.PREFERENCE_PAIRS,
    }  # fmt: skip
    for name, schema in stored.items():
        columns = graph.get(dg.AssetKey(name)).metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == schema.names(), name
        assert all(c.description for c in columns), name


def test_embedded_prompt_set_gives_partitions_of_batch_size() -> None:
    defs = build_definitions(Settings(batch_size=16))
    keys = defs.resolve_job_def(JOB_NAME).partitions_def.get_partition_keys()
    assert keys == [f"batch-{i:05d}" for i in range(10)]


def test_module_definitions_load() -> None:
    from pref_assets import definitions

    defs = definitions.defs
    assert _graph(defs) == _graph(build_definitions(Settings()))
    assert {job.name for job in defs.resolve_all_job_defs()} >= {JOB_NAME, "review_job"}
    keys = defs.resolve_job_def(JOB_NAME).partitions_def.get_partition_keys()
    assert keys == [f"batch-{i:05d}" for i in range(20)]  # the 160 shipped prompts in batches of 8
    assert {sensor.name for sensor in defs.sensors} >= {"argilla_responses"}


def test_rubric_edit_changes_the_ratings_code_version() -> None:
    graph = build_definitions(Settings()).resolve_asset_graph()
    from pref_assets.core.rubric import RUBRIC_VERSION

    assert RUBRIC_VERSION in graph.get(dg.AssetKey("ratings")).code_version
