"""Chat message lists for a prompt: its instruction, optional system prompt and optional whole conversation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Message = dict[str, str]


def prompt_messages(
    instruction: str | None, system_prompt: str | None = None, messages: Sequence[Mapping[str, str]] | None = None
) -> list[Message]:
    """Return the messages a generator is sent: the conversation, or system + user instruction."""
    if messages:
        out = [dict(m) for m in messages]
        if system_prompt and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": system_prompt})
        return out
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*head, {"role": "user", "content": instruction or ""}]


def judged_prompt(
    instruction: str | None, system_prompt: str | None = None, messages: Sequence[Mapping[str, str]] | None = None
) -> str:
    """Return what the judge is shown as the instruction: the instruction itself, or, when the prompt is more than
    one user turn (a system prompt, earlier turns), the whole conversation the answers continue."""
    turns = prompt_messages(instruction, system_prompt, messages)
    if turns == [{"role": "user", "content": instruction}]:
        return instruction or ""
    text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in turns)
    return f"A conversation; each answer below is the assistant's next turn.\n\n{text}"
