"""Hugging Face Hub datasets through ``datasets.load_dataset``; offline fails fast with alternatives."""

from __future__ import annotations

import os

import httpx

from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns
from pref_assets.settings import SourceSettings

_ALTERNATIVES = (
    "download it elsewhere and point source.kind: files at the JSONL/Parquet/CSV copy, "
    "or use source.kind: embedded"
)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Return whether the Hub answers within ``timeout`` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=timeout)
    except httpx.TransportError:
        return False
    return True


def read_hub(source: SourceSettings) -> list[RawRow]:
    """Return the rows of ``source.repo_id`` / ``source.split``."""
    if not source.repo_id:
        raise PromptSourceError("source.kind is 'hub' but source.repo_id is not set")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    if not offline and not hub_reachable():
        raise PromptSourceError(f"Hugging Face Hub unreachable: cannot load {source.repo_id!r}; {_ALTERNATIVES}")
    dataset = _load(source)
    where = f"hub:{source.repo_id}[{source.split}]"
    rows = [RawRow(f"{where}:row {i + 1}", row) for i, row in enumerate(dataset)]
    check_columns(dataset.column_names, source.columns, where)
    return rows


def _load(source: SourceSettings):  # noqa: ANN202 - datasets.Dataset, imported lazily (about 2 s)
    import datasets

    try:
        return datasets.load_dataset(source.repo_id, split=source.split, revision=source.revision)
    except (ConnectionError, OSError, ValueError) as err:
        raise PromptSourceError(
            f"cannot load {source.repo_id!r} split {source.split!r} from the Hub ({type(err).__name__}: "
            f"{str(err)[:300]}); offline, {_ALTERNATIVES}"
        ) from err
