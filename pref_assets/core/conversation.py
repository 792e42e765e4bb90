"""Chat message lists for a prompt row."""

from __future__ import annotations

from typing import Any

Message = dict[str, str]


def prompt_messages(row: dict[str, Any]) -> list[Message]:
    """Return the messages a generator is sent: the conversation, or system + user instruction."""
    system = row.get("system_prompt")
    if row.get("messages"):
        messages = [dict(m) for m in row["messages"]]
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return messages
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": row["instruction"]}]
