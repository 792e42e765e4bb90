"""The dataset card is one the Hub reads: huggingface_hub's card tooling parses its metadata, which holds the
license, languages, size, task, tags, the data files and their features; the body keeps the set's facts."""

from __future__ import annotations

import polars as pl
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from pref_assets.core.card import CardFacts, render_card, size_category
from pref_assets.defs.publish import card_features
from pref_assets.export import to_layout

FRAME = pl.DataFrame({
    "prompt": ["Why is the sky blue?"], "prompt_id": ["a" * 64],
    "chosen": [[{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Rayleigh."}]],
    "chosen_model": ["m1"], "chosen_rating": [4.5],
    "rejected": [[{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Paint."}]],
    "rejected_model": ["m2"], "rejected_rating": [1.0], "margin": [3.5], "pair_source": ["human"],
    "batch": ["batch-00000"],
})  # fmt: skip


def _facts(**changes: object) -> CardFacts:
    facts = {
        "title": "me/prefs", "generators": [("a", "org/a"), ("b", "org/b")], "judges": [("j", "org/judge")],
        "aspects": ["helpfulness", "honesty"], "pair_policy": "highest vs lowest.", "layout": "trl-conversational",
        "pairs": 1, "prompts": 2, "pair_sources": {"human": 1}, "batches": ["batch-00000"], "rubric_version": "r1",
        "source": "the embedded prompt set", "license": "apache-2.0", "language": ["en", "fr"],
        "features": card_features(to_layout(FRAME, "trl-conversational")),
        "extra_sections": {"Judge calibration": "accuracy 0.91 on 64 labelled pairs"},
    }  # fmt: skip
    return CardFacts(**{**facts, **changes})  # type: ignore[arg-type]


def test_the_card_validates_with_huggingface_hub_and_keeps_its_body() -> None:
    text = render_card(_facts())
    card = DatasetCard(text)
    data = card.data
    assert isinstance(data, DatasetCardData)
    assert data.license == "apache-2.0" and data.language == ["en", "fr"] and data.pretty_name == "me/prefs"
    assert data.size_categories == ["n<1K"] and data.task_categories == ["text-generation"]
    assert {"dpo", "orpo", "preference"} <= set(data.tags)
    files = [{"split": "train", "path": "data/train.parquet"}]
    assert data.configs == [{"config_name": "default", "data_files": files}]
    features = {f["name"]: f for f in data.dataset_info["features"]}
    assert list(features) == to_layout(FRAME, "trl-conversational").columns
    assert [f["name"] for f in features["prompt"]["large_list"]] == ["role", "content"]
    assert features["margin"]["dtype"] == "float64"
    assert data.dataset_info["splits"] == [{"name": "train", "num_examples": 1}]
    # A round trip through the Hub's own metadata class gives the same header.
    assert DatasetCardData(**data.to_dict()).to_dict() == data.to_dict()
    for needle in ("`org/a`", "`org/judge`", "`helpfulness`, `honesty`", "Decided by: human 1.",
                   "## Judge calibration", "accuracy 0.91", "batch-00000"):  # fmt: skip
        assert needle in card.text


def test_a_panel_of_judges_is_named_and_an_empty_set_still_gives_a_valid_card() -> None:
    card = DatasetCard(render_card(_facts(judges=[("j1", "org/j1"), ("j2", "org/j2")], pairs=0, pair_sources={})))
    assert "Judges: `j1` (`org/j1`); `j2` (`org/j2`)" in card.text and "Decided by: none." in card.text
    assert card.data.dataset_info["splits"] == [{"name": "train", "num_examples": 0}]


@pytest.mark.parametrize(("n", "label"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (250_000, "100K<n<1M")])
def test_size_categories_follow_the_hub_buckets(n: int, label: str) -> None:
    assert size_category(n) == label
