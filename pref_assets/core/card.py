"""The dataset card of a published preference set: the Hub's metadata header, then what made it, how pairs were
chosen, counts and lineage.

The body is a mapping of section title -> markdown (``card_sections``); ``CardFacts.extra_sections`` adds
sections after the built-in ones, in order (``defs/publish.py`` fills it from ``CARD_SECTIONS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

DATA_FILE = "data/train.parquet"
SPLIT = "train"
TAGS = ["dpo", "orpo", "preference", "rlhf", "synthetic", "llm-as-judge", "ultrafeedback"]
# The Hub's size buckets, smallest first: (upper bound, label).
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
          (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]  # fmt: skip


@dataclass(frozen=True, slots=True)
class CardJudge:
    """A judge as the card names it: its name, model and the rubric aspects it rates."""

    name: str
    model: str
    aspects: Sequence[str]


@dataclass(frozen=True, slots=True)
class CardFacts:
    """Everything the card states; counts come from the data, the rest from the configuration.

    ``judges`` are the panel's judges, each with its own aspects; ``features`` is the ``dataset_info.features``
    list of the published file (the Hub's YAML form); ``extra_sections`` maps a section title to its markdown,
    shown after the built-in sections.
    """

    title: str
    generators: Sequence[tuple[str, str]]
    judges: Sequence[CardJudge]
    pair_policy: str
    layout: str
    pairs: int
    prompts: int
    pair_sources: Mapping[str, int]
    batches: Sequence[str]
    rubric_version: str
    source: str
    license: str = "unknown"
    language: Sequence[str] = ("en",)
    features: Sequence[Mapping[str, Any]] = ()
    extra_sections: Mapping[str, str] = field(default_factory=dict)


def size_category(n: int) -> str:
    """Return the Hub's ``size_categories`` label for ``n`` rows."""
    return next((label for bound, label in _SIZES if n < bound), "n>1T")


def card_metadata(facts: CardFacts) -> dict[str, Any]:
    """Return the card's YAML header as a mapping: license, language, size, task, tags, the data files and their
    features."""
    return {
        "pretty_name": facts.title,
        "license": facts.license,
        "language": list(facts.language),
        "size_categories": [size_category(facts.pairs)],
        "task_categories": ["text-generation"],
        "tags": TAGS,
        "configs": [{"config_name": "default", "data_files": [{"split": SPLIT, "path": DATA_FILE}]}],
        "dataset_info": {
            "features": [dict(f) for f in facts.features],
            "splits": [{"name": SPLIT, "num_examples": facts.pairs}],
        },
    }


def card_sections(facts: CardFacts) -> dict[str, str]:
    """Return the card's body as section title -> markdown, the built-in sections first, then the extra ones."""
    made = [
        f"- Prompts: {facts.source}.",
        "- Answers: " + "; ".join(f"`{name}` (`{model}`)" for name, model in facts.generators) + ".",
        f"- {'Judge' if len(facts.judges) == 1 else 'Judges'}: {_judges(facts.judges)}; UltraFeedback-style "
        f"rubric (rubric version `{facts.rubric_version}`). {_score_rule(len(facts.judges))}",
        f"- Pairs: {facts.pair_policy}",
        "- Decided by: " + (", ".join(f"{k} {v}" for k, v in sorted(facts.pair_sources.items())) or "none") + ".",
    ]
    lineage = (
        f"Batches: {', '.join(facts.batches) or 'none'}. Every prompt of these batches is accounted for in the "
        "pipeline's assets; prompts without a pair were skipped with a reason (ties, too few rated answers, "
        "failed calls) and are not in this set."
    )
    use = (
        f"`{DATA_FILE}` holds the `{SPLIT}` split in the `{facts.layout}` layout. "
        '`datasets.load_dataset("parquet", data_files="' + DATA_FILE + '")` reads a local copy; TRL\'s '
        "`DPOTrainer` and `ORPOTrainer` take the `trl-conversational` and `trl-standard` layouts as they are."
    )
    return {"How it was made": "\n".join(made), "Lineage": lineage, "Use": use, **facts.extra_sections}


def render_card(facts: CardFacts) -> str:
    """Return the README.md of the dataset: YAML header, title, summary, then each section."""
    header = yaml.safe_dump(card_metadata(facts), sort_keys=False, allow_unicode=True)
    summary = (
        f"{facts.pairs} preference pairs (chosen / rejected) from {facts.prompts} prompts, for DPO or ORPO "
        f"training, in the `{facts.layout}` layout."
    )
    body = [f"# {facts.title}", "", summary, ""]
    for title, text in card_sections(facts).items():
        body += [f"## {title}", "", text.strip(), ""]
    return "---\n" + header + "---\n\n" + "\n".join(body)


def _judges(judges: Sequence[CardJudge]) -> str:
    return "; ".join(f"`{j.name}` (`{j.model}`, aspects: {', '.join(f'`{a}`' for a in j.aspects)})" for j in judges)


def _score_rule(panel_size: int) -> str:
    if panel_size == 1:
        return "An answer's score is the mean of the judge's ratings of it over its aspects (and passes and parts)."
    return (
        "An answer's score is the mean over the judges that rated it of each judge's mean rating of it over that "
        "judge's aspects (and passes and parts)."
    )
