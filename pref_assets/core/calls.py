"""A model call as a value: the endpoint it goes to and its request; results come back aligned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STRUCTURED_FLAVOURS = ("json_object_schema", "json_schema", "tgi_grammar", "none")


@dataclass(frozen=True, slots=True)
class Call:
    """One chat request for one endpoint."""

    endpoint: str
    model: str
    messages: tuple[dict[str, str], ...]
    params: tuple[tuple[str, Any], ...] = ()
    response_format: dict[str, Any] | None = None


def response_format(schema: dict[str, Any], flavour: str) -> dict[str, Any] | None:
    """Return the ``response_format`` body for a JSON schema in an endpoint's flavour.

    ``json_object_schema``: llama.cpp / vLLM (``{"type": "json_object", "schema": ...}``);
    ``json_schema``: OpenAI structured outputs (also vLLM, Ollama, recent TGI);
    ``tgi_grammar``: TGI's grammar form (``{"type": "json", "value": ...}``); ``none``: ask in the prompt only.
    """
    if flavour == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if flavour == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "verdicts", "schema": schema}}
    if flavour == "tgi_grammar":
        return {"type": "json", "value": schema}
    if flavour == "none":
        return None
    raise ValueError(f"unknown structured-output flavour {flavour!r}; known: {STRUCTURED_FLAVOURS}")
