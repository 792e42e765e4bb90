"""The dataset card is one the Hub reads: huggingface_hub's card tooling parses its metadata, which holds the
license, languages, size, task, tags, the data files and their features; the body keeps the set's facts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from pref_assets.core.card import CardFacts, CardJudge, render_card, size_category
from pref_assets.defs.publish import card_facts, card_features
from pref_assets.export import to_layout
from pref_assets.settings import Settings

FRAME = pl.DataFrame({
    "prompt": ["Why is the sky blue?"], "prompt_id": ["a" * 64],
    "chosen": [[{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Rayleigh."}]],
    "chosen_model": ["m1"], "chosen_rating": [4.5],
    "rejected": [[{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Paint."}]],
    "rejected_model": ["m2"], "rejected_rating": [1.0], "margin": [3.5], "pair_source": ["human"],
    "batch": ["batch-00000"],
})  # fmt: skip
_LIST = {"large_list": [{"name": "role", "dtype": "large_string"}, {"name": "content", "dtype": "large_string"}]}
_TEXT, _FLOAT = {"dtype": "large_string"}, {"dtype": "float64"}
FEATURES = [{"name": "prompt", **_LIST}, {"name": "chosen", **_LIST}, {"name": "rejected", **_LIST},
            {"name": "prompt_id", **_TEXT}, {"name": "chosen_model", **_TEXT}, {"name": "chosen_rating", **_FLOAT},
            {"name": "rejected_model", **_TEXT}, {"name": "rejected_rating", **_FLOAT}, {"name": "margin", **_FLOAT},
            {"name": "pair_source", **_TEXT}, {"name": "batch", **_TEXT}]  # fmt: skip
TAGS = ["dpo", "orpo", "preference", "rlhf", "synthetic", "llm-as-judge", "ultrafeedback"]


def _facts(**changes: object) -> CardFacts:
    facts = {
        "title": "me/prefs", "generators": [("a", "org/a"), ("b", "org/b")],
        "judges": [CardJudge("j", "org/judge", ["helpfulness", "honesty"])], "pair_policy": "highest vs lowest.",
        "layout": "trl-conversational", "pairs": 1, "prompts": 2, "pair_sources": {"human": 1},
        "batches": ["batch-00000"], "rubric_version": "r1", "source": "embedded: the shipped prompt set",
        "license": "apache-2.0", "language": ["en", "fr"],
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
    # The header as the Hub's own metadata class reads it, field by field.
    assert data.to_dict() == {
        "pretty_name": "me/prefs", "license": "apache-2.0", "language": ["en", "fr"], "size_categories": ["n<1K"],
        "task_categories": ["text-generation"], "tags": TAGS,
        "configs": [{"config_name": "default", "data_files": files}],
        "dataset_info": {"features": FEATURES, "splits": [{"name": "train", "num_examples": 1}]},
    }  # fmt: skip
    for needle in ("Prompts: embedded: the shipped prompt set.", "`org/a`",
                   "Judge: `j` (`org/judge`, aspects: `helpfulness`, `honesty`)",
                   "the mean of the judge's ratings of it over its aspects", "Decided by: human 1.",
                   "## Judge calibration", "accuracy 0.91", "batch-00000"):  # fmt: skip
        assert needle in card.text


def test_a_panel_of_judges_is_named_and_an_empty_set_still_gives_a_valid_card() -> None:
    judges = [CardJudge("j1", "org/j1", ["helpfulness"]), CardJudge("j2", "org/j2", ["honesty", "truthfulness"])]
    card = DatasetCard(render_card(_facts(judges=judges, pairs=0, pair_sources={})))
    assert ("Judges: `j1` (`org/j1`, aspects: `helpfulness`); `j2` (`org/j2`, aspects: `honesty`, `truthfulness`)"
            in card.text)  # fmt: skip
    assert ("the mean over the judges that rated it of each judge's mean rating of it over that judge's aspects"
            in card.text)  # fmt: skip
    assert "Decided by: none." in card.text
    assert card.data.dataset_info["splits"] == [{"name": "train", "num_examples": 0}]


@pytest.mark.parametrize(
    ("n", "label"),
    [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (250_000, "100K<n<1M"), (999_999_999, "100M<n<1B"),
     (1_000_000_000, "1B<n<10B"), (10**10, "10B<n<100B"), (10**12 - 1, "100B<n<1T"), (10**12, "n>1T")],
)  # fmt: skip
def test_size_categories_follow_the_hub_buckets(n: int, label: str) -> None:
    assert size_category(n) == label


def test_the_published_card_names_each_judge_s_aspects_and_the_configured_source(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "storage_dir": str(tmp_path), "source": {"kind": "folder", "folder": str(tmp_path / "inbox")},
        "endpoints": [{"name": "e", "base_url": "http://127.0.0.1:9/v1"}],
        "generators": [{"name": n, "endpoint": "e", "model": f"org/{n}"} for n in ("a", "b")],
        "judges": [{"name": "j1", "endpoint": "e", "model": "org/j1", "aspects": ["helpfulness"]},
                   {"name": "j2", "endpoint": "e", "model": "org/j2", "aspects": ["honesty", "truthfulness"]}],
    })  # fmt: skip
    facts = card_facts(settings, FRAME, pl.DataFrame({"status": ["ok", "skipped"]}), {})
    assert facts.source == f"folder: {tmp_path / 'inbox'}"
    assert facts.judges == [CardJudge("j1", "org/j1", ["helpfulness"]),
                            CardJudge("j2", "org/j2", ["honesty", "truthfulness"])]  # fmt: skip
