"""Upload the final preference set: a local Parquet copy with its card, and the Hugging Face Hub if configured."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pref_assets.core.paths import ensure_inside
from pref_assets.export import to_layout, write_pairs
from pref_assets.private import make_dirs, restrict
from pref_assets.sources.hub import hub_endpoint, hub_reachable, hub_secrets


class PublishError(RuntimeError):
    """The Hub refused the upload; the message is the Hub's, with the token masked."""


@dataclass(frozen=True, slots=True)
class Published:
    """Where the set went; ``hub`` says why not when it was not pushed."""

    local_dir: Path
    pushed: bool
    hub: str


@contextmanager
def publishing(out_dir: Path, *, private: bool = True) -> Iterator[Path]:
    """Hold ``out_dir``'s lock while the set is gathered and written: runs of several batches at once publish one
    after the other, so the last one to write has read every batch written before it."""
    make_dirs(out_dir / "data", private=private)
    lock = out_dir / ".lock"
    ensure_inside(out_dir, lock, what=".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield out_dir
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_local(pairs: pl.DataFrame, card: str, out_dir: Path, layout: str, *, private: bool = True) -> Path:
    """Write ``data/train.parquet`` and ``README.md`` under ``out_dir`` (0600 files in 0700 folders if ``private``);
    each file is replaced whole, so a reader never sees half of one."""
    make_dirs(out_dir / "data", private=private)
    data, readme = out_dir / "data" / "train.parquet", out_dir / "README.md"
    for path in (data, readme):
        ensure_inside(out_dir, path, what=str(path.relative_to(out_dir)))
    partial_data = write_pairs(to_layout(pairs, layout), data.with_name(f".train.{os.getpid()}.parquet"))
    partial_readme = readme.with_name(f".README.{os.getpid()}.md")
    partial_readme.write_text(card, encoding="utf-8")
    for partial, final in ((partial_data, data), (partial_readme, readme)):
        if private:
            restrict(partial)
        os.replace(partial, final)
    return out_dir


def push(out_dir: Path, repo_id: str | None, token: str | None, *, private: bool) -> tuple[bool, str]:
    """Upload the local copy to the Hub; return (pushed, what happened). Offline is a message, not an error.

    A refusal raises PublishError with the Hub's words; the token never appears in it, in whatever form the Hub
    (or an ``HF_ENDPOINT`` mirror) echoes it.
    """
    if not repo_id:
        return False, "not pushed: publish.repo_id is not set"
    if not token:
        return False, f"not pushed to {repo_id}: no Hugging Face token in the configured variable"
    if not hub_reachable():
        return (
            False,
            f"not pushed to {repo_id}: the Hugging Face Hub is unreachable; the local copy is complete",
        )
    from huggingface_hub import HfApi

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        # the lock and any half-written file are hidden names, never uploaded
        hidden = [".*", "*/.*"]
        api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset", ignore_patterns=hidden)
    except Exception as err:  # re-raised masked; chaining it would carry the token to the event log
        reason = hub_secrets(token).cut(f"{type(err).__name__}: {err}", 500)
        raise PublishError(f"not pushed to {repo_id} at {endpoint}: {reason}") from None
    return True, f"pushed to {endpoint}/datasets/{repo_id}"
