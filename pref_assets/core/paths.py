"""Paths built from names (asset names, partition keys) stay inside their root folder.

A partition key can come from outside (a dynamic partition added through the instance API or the UI), so a key
such as ``../../elsewhere/batch-00000`` must never become a path outside the storage folder: each part is checked
as text (no ``..``, no absolute path, no backslash, no NUL or other control character), then the joined path is
resolved (symlinks followed) and must still be inside the resolved root.
"""

from __future__ import annotations

import re
from pathlib import Path

_SHOWN = 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PathEscapeError(ValueError):
    """A name would make a path outside its root folder."""


def contained_path(root: str | Path, *parts: str, what: str = "name") -> Path:
    """Return ``root/part/...``; raise PathEscapeError naming the offending ``what`` (e.g. a partition key) when a
    part is not a plain relative name or the path resolves outside ``root``."""
    for part in parts:
        problem = _part_problem(part)
        if problem:
            raise PathEscapeError(f"{what} {shown(part)} cannot name a file under {root}: {problem}")
    path = Path(root).joinpath(*parts)
    ensure_inside(root, path, what=f"{what} {shown(parts[-1])}" if parts else what)
    return path


def ensure_inside(root: str | Path, path: str | Path, *, what: str = "path") -> None:
    """Raise PathEscapeError when ``path`` (symlinks followed) is not inside ``root`` (symlinks followed)."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"{what} leads outside {root} (to a link or folder elsewhere); refused")


def shown(text: str) -> str:
    """Return ``text`` safe to put in a message: control characters escaped, cut to a bounded length."""
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return repr(cut)


def _part_problem(part: str) -> str | None:
    if not part:
        return "it is empty"
    if _CONTROL.search(part):
        return "it holds a control character (NUL, line break, ...)"
    if "\\" in part:
        return "it holds a backslash"
    if part.startswith("/") or re.match(r"[A-Za-z]:", part):
        return "it is an absolute path"
    segments = part.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "it holds '..', '.' or an empty path segment"
    return None
