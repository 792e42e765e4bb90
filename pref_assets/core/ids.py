"""Deterministic identifiers."""

from __future__ import annotations

import hashlib
import json
import uuid

_RECORD_NAMESPACE = uuid.UUID("6f1f3a52-5d0e-4f8e-9a51-2b7c1d7e4a10")


def prompt_id(instruction: str, messages: list[dict[str, str]] | None = None) -> str:
    """Return the SHA-256 hex digest of the instruction's UTF-8 bytes, or of the whole conversation ``messages``
    when it is more than that one user turn (a system prompt, earlier turns)."""
    if messages is None or messages == [{"role": "user", "content": instruction}]:
        return hashlib.sha256(instruction.encode("utf-8")).hexdigest()
    canonical = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record_uuid(dataset: str, prompt_id_: str) -> str:
    """Return a stable record UUID for one prompt in one dataset."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{dataset}\x00{prompt_id_}"))


def stable_hash(*parts: str) -> str:
    """Return a short hex digest of the joined parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return digest.hexdigest()[:16]
