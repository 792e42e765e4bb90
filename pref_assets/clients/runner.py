"""Run many calls across endpoints concurrently; one client (and connection pool) per endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from pref_assets.clients.llm import ChatClient, ChatRequest, ChatResult
from pref_assets.core.calls import Call

ClientFactory = Callable[[str], ChatClient]


def run_calls(calls: Sequence[Call], client_for: ClientFactory) -> list[ChatResult]:
    """Return one result per call, in order. Blocks; failures are results."""
    if not calls:
        return []
    return asyncio.run(_run(calls, client_for))


async def _run(calls: Sequence[Call], client_for: ClientFactory) -> list[ChatResult]:
    clients = {name: client_for(name) for name in dict.fromkeys(c.endpoint for c in calls)}
    try:
        return list(await asyncio.gather(*(clients[c.endpoint].complete(to_request(c)) for c in calls)))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients.values()))


def to_request(call: Call) -> ChatRequest:
    """Return the HTTP-level request of a call."""
    return ChatRequest(call.model, list(call.messages), dict(call.params), call.response_format)
