"""The dataset card of a published preference set: what made it, how pairs were chosen, counts, lineage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CardFacts:
    """Everything the card states; counts come from the data, the rest from the configuration."""

    title: str
    generators: Sequence[tuple[str, str]]
    judge: tuple[str, str]
    aspects: Sequence[str]
    pair_policy: str
    layout: str
    pairs: int
    prompts: int
    pair_sources: Mapping[str, int]
    batches: Sequence[str]
    rubric_version: str
    source: str


def render_card(facts: CardFacts) -> str:
    """Return the README.md (YAML header + markdown) of the dataset."""
    header = ["---", "tags:", "- dpo", "- orpo", "- preference", "- synthetic", "task_categories:",
              "- text-generation", f"pretty_name: {facts.title}", "---", ""]  # fmt: skip
    body = [
        f"# {facts.title}",
        "",
        f"{facts.pairs} preference pairs (chosen / rejected) from {facts.prompts} prompts, for DPO or ORPO "
        f"training, in the `{facts.layout}` layout.",
        "",
        "## How it was made",
        "",
        f"- Prompts: {facts.source}.",
        "- Answers: " + "; ".join(f"`{name}` (`{model}`)" for name, model in facts.generators) + ".",
        f"- Judge: `{facts.judge[0]}` (`{facts.judge[1]}`), UltraFeedback-style rubric, aspects: "
        + ", ".join(f"`{a}`" for a in facts.aspects)
        + f" (rubric version `{facts.rubric_version}`). An answer's score is the mean of its aspect ratings.",
        f"- Pairs: {facts.pair_policy}",
        "- Decided by: " + (", ".join(f"{k} {v}" for k, v in sorted(facts.pair_sources.items())) or "none") + ".",
        "",
        "## Lineage",
        "",
        f"Batches: {', '.join(facts.batches) or 'none'}. Every prompt of these batches is accounted for in the "
        "pipeline's assets; prompts without a pair were skipped with a reason (ties, too few rated answers, "
        "failed calls) and are not in this set.",
        "",
    ]
    return "\n".join(header + body)
