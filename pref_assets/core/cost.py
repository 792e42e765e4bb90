"""What tokens cost: the one price rule every stage, budget and report uses."""

from __future__ import annotations


def cost_usd(prompt_tokens: int, completion_tokens: int, price_in: float, price_out: float) -> float:
    """Return the USD cost of ``prompt_tokens`` and ``completion_tokens`` at ``price_in`` / ``price_out`` USD per
    million tokens."""
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6
