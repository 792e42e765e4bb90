"""Upload the final preference set: a local Parquet copy with its card, and the Hugging Face Hub if configured."""

from __future__ import annotations

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


def write_local(pairs: pl.DataFrame, card: str, out_dir: Path, layout: str, *, private: bool = True) -> Path:
    """Write ``data/train.parquet`` and ``README.md`` under ``out_dir`` (0600 files in 0700 folders if ``private``)."""
    make_dirs(out_dir / "data", private=private)
    for path in (out_dir / "data" / "train.parquet", out_dir / "README.md"):
        ensure_inside(out_dir, path, what=str(path.relative_to(out_dir)))
    data = write_pairs(to_layout(pairs, layout), out_dir / "data" / "train.parquet")
    readme = out_dir / "README.md"
    readme.write_text(card, encoding="utf-8")
    if private:
        restrict(data)
        restrict(readme)
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
        api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset")
    except Exception as err:  # re-raised masked; chaining it would carry the token to the event log
        reason = hub_secrets(token).cut(f"{type(err).__name__}: {err}", 500)
        raise PublishError(f"not pushed to {repo_id} at {endpoint}: {reason}") from None
    return True, f"pushed to {endpoint}/datasets/{repo_id}"
