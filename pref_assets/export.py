"""The final preference set: ok pairs of every materialized batch, as Parquet, JSONL or a ``datasets.Dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import datasets

PAIR_COLUMNS = [
    "prompt", "prompt_id", "chosen", "chosen_model", "chosen_rating",
    "rejected", "rejected_model", "rejected_rating", "margin",
]  # fmt: skip


def collect_pairs(storage_dir: str | Path, asset: str = "dpo_pairs") -> pl.DataFrame:
    """Return the ok pairs of every materialized batch, in batch order, in the DPO columns."""
    files = sorted((Path(storage_dir) / asset).glob("*.parquet"))
    if not files:
        return pl.DataFrame()
    frames = [pl.read_parquet(f).filter(pl.col("status") == "ok").with_columns(batch=pl.lit(f.stem)) for f in files]
    return pl.concat(frames, how="diagonal_relaxed").select([*PAIR_COLUMNS, "batch"])


def write_pairs(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write the pairs as ``.parquet`` or ``.jsonl`` (chosen along the suffix)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".parquet":
        frame.write_parquet(target)
    elif target.suffix == ".jsonl":
        frame.write_ndjson(target)
    else:
        raise ValueError(f"{target}: use a .parquet or .jsonl file name")
    return target


def to_dataset(frame: pl.DataFrame) -> datasets.Dataset:
    """Return the pairs as a ``datasets.Dataset`` (what TRL's DPOTrainer and ORPOTrainer take)."""
    import datasets

    return datasets.Dataset.from_polars(frame)
