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


def judged_prompt(row: dict[str, Any]) -> str:
    """Return what the judge is shown as the instruction: the instruction itself, or, when the prompt is more than
    one user turn (a system prompt, earlier turns), the whole conversation the answers continue."""
    messages = prompt_messages(row)
    if messages == [{"role": "user", "content": row["instruction"]}]:
        return row["instruction"]
    turns = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
    return f"A conversation; each answer below is the assistant's next turn.\n\n{turns}"
