"""A content-addressed request cache in SQLite: a response is stored the moment it arrives.

The key is a hash of the exact request (endpoint identity, model, messages, generation parameters,
response format) and nothing else, so a rerun sends only the requests that never completed, and
changing one model's parameters re-sends only that model's calls. Safe for concurrent processes (WAL).

An endpoint called with an API key has its answers in a namespace of that key (a fingerprint of it, never
the key): a different key, a wrong one included, never reads them. Calls without a key share one namespace.
The file and the folders it creates are private to the user (0600, 0700) unless ``private`` is False.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pref_assets.private import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def request_key(endpoint_id: str, body: dict[str, Any], namespace: str = "") -> str:
    """Return the cache key of one request body sent to one endpoint, in ``namespace`` (a key's fingerprint;
    "" for calls without a key, whose keys are those of earlier versions)."""
    parts = [endpoint_id, namespace, body] if namespace else [endpoint_id, body]
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RequestCache:
    """Stores completed responses by request key."""

    def __init__(self, path: str | Path, *, private: bool = True) -> None:
        self.path = Path(path)
        self._db = open_sqlite(self.path, private=private)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored response for ``key``, if any."""
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, endpoint: str, model: str, response: dict[str, Any]) -> None:
        """Store a response (the first one stored for a key wins)."""
        self._db.execute(
            "INSERT OR IGNORE INTO responses (key, endpoint, model, response, created_at) VALUES (?, ?, ?, ?, ?)",
            (key, endpoint, model, json.dumps(response, ensure_ascii=False), time.time()),
        )

    def count(self) -> int:
        """Return how many responses are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> int:
        """Delete every stored response; return how many there were."""
        return self._db.execute("DELETE FROM responses").rowcount

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
