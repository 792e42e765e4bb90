"""Principles: system prompts that steer how a generator answers, one drawn per answer.

A principle is given to the generator only: the judge rates the answer against the prompt as the user wrote it,
and the stored pair holds the prompt without it, so the model trained on the pair learns the behaviour without
being told to. The draw is seeded by the prompt id, the generator and the candidate index, so a rerun draws the
same principle, sends the same request and is answered from the request cache.

The texts are module constants; ``PRINCIPLES_VERSION`` hashes them into the generations asset's code version.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from pref_assets.core.ids import stable_hash

HELPFULNESS = (
    "Aim to be as useful as you can to the person asking. Work out what they actually need, answer that "
    "directly, and give the steps, examples or detail that let them act on it. Keep to the question; leave out "
    "padding and repetition."
)
HONESTY = (
    "Be honest about what you know. If you do not know something, say so instead of guessing; if a question "
    "rests on a false premise, point it out; if you cannot or will not do part of a task, say which part and why. "
    "Never pretend to have done something you have not."
)
TRUTHFULNESS = (
    "State only what is true. Do not invent facts, names, numbers, quotations or sources, and do not add "
    "details the question did not give you. When the question itself supplies information, stay consistent "
    "with it, and make sure your answer does not contradict itself."
)
CALIBRATED_UNCERTAINTY = (
    "Match your confidence to your evidence. Be plain and direct about what is well established; where you are "
    "unsure, say how unsure, for example with a short phrase such as 'I am fairly confident' or 'this is a "
    "guess', and say what would settle the question."
)

BUILT_IN: dict[str, str] = {
    "helpfulness": HELPFULNESS,
    "honesty": HONESTY,
    "truthfulness": TRUTHFULNESS,
    "calibrated_uncertainty": CALIBRATED_UNCERTAINTY,
}

def builtin_text(name: str) -> str:
    """Return the text of the built-in principle ``name`` or raise naming the known ones."""
    try:
        return BUILT_IN[name]
    except KeyError:
        raise ValueError(f"unknown principle {name!r}; built in: {sorted(BUILT_IN)} (or give its text)") from None


def draw_principle(names: Sequence[str], prompt_id: str | None, generator: str, candidate: int) -> str | None:
    """Return the principle for one answer: drawn from ``names`` with a seed of the prompt id, the generator and
    the candidate index (the same answer always draws the same one); None when there are no principles."""
    if not names:
        return None
    seed = stable_hash("principle", prompt_id or "", generator, str(candidate))
    return random.Random(seed).choice(list(names))


def system_text(*parts: str | None) -> str | None:
    """Return the non-empty ``parts`` joined as one system prompt, or None."""
    kept = [p.strip() for p in parts if p and p.strip()]
    return "\n\n".join(kept) or None


def principles_version(texts: Mapping[str, str]) -> str:
    """Return a short hash of the configured principles' names and texts (custom ones included)."""
    return stable_hash(*(f"{name}|{text}" for name, text in texts.items()))[:12]


PRINCIPLES_VERSION = principles_version(BUILT_IN)
