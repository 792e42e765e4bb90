"""Publish the final preference set: a local Parquet copy with its card, and the Hugging Face Hub if configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pref_assets.export import to_layout, write_pairs
from pref_assets.sources.hub import hub_reachable


@dataclass(frozen=True, slots=True)
class Published:
    """Where the set went; ``hub`` says why not when it was not pushed."""

    local_dir: Path
    pushed: bool
    hub: str


def write_local(pairs: pl.DataFrame, card: str, out_dir: Path, layout: str) -> Path:
    """Write ``data/train.parquet`` and ``README.md`` under ``out_dir``."""
    write_pairs(to_layout(pairs, layout), out_dir / "data" / "train.parquet")
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    return out_dir


def push(out_dir: Path, repo_id: str | None, token: str | None, *, private: bool) -> tuple[bool, str]:
    """Upload the local copy to the Hub; return (pushed, what happened). Offline is a message, not an error."""
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

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset")
    return True, f"pushed to https://huggingface.co/datasets/{repo_id}"
