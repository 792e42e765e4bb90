"""The final preference set: ok pairs of every materialized batch, as Parquet, JSONL or a ``datasets.Dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pref_assets.core.paths import contained_path, ensure_inside

if TYPE_CHECKING:
    import datasets

PAIR_COLUMNS = [
    "prompt", "prompt_id", "chosen", "chosen_model", "chosen_rating",
    "rejected", "rejected_model", "rejected_rating", "margin",
]  # fmt: skip


def collect_pairs(storage_dir: str | Path, asset: str = "dpo_pairs") -> pl.DataFrame:
    """Return the ok pairs of every materialized batch, in batch order, in the DPO columns."""
    folder = contained_path(storage_dir, asset, what="asset name")
    files = partition_files(folder)
    if not files:
        return pl.DataFrame()
    frames = [
        pl.read_parquet(f).filter(pl.col("status") == "ok").with_columns(batch=pl.lit(_partition_key(folder, f)))
        for f in files
    ]
    frame = pl.concat(frames, how="diagonal_relaxed")
    extra = [c for c in ("pair_source",) if c in frame.columns]
    return frame.select([*PAIR_COLUMNS, *extra, "batch"])


def partition_files(folder: Path) -> list[Path]:
    """Return an asset's stored partitions in key order; a watched-folder key ``f.jsonl/batch-00000`` is a subfolder.

    Raise PathEscapeError when one is a link to a file outside ``folder``.
    """
    files = sorted(folder.rglob("*.parquet"))
    for file in files:
        ensure_inside(folder, file, what=f"stored partition {file.relative_to(folder).as_posix()!r}")
    return files


def _partition_key(folder: Path, file: Path) -> str:
    return file.relative_to(folder).with_suffix("").as_posix()


LAYOUTS = ("dpo", "trl-conversational", "trl-standard")


def to_layout(frame: pl.DataFrame, layout: str = "dpo") -> pl.DataFrame:
    """Return the pairs in one layout.

    ``dpo``: the FormatTextGenerationDPO columns as stored (``prompt`` text; chosen/rejected the whole
    conversation). ``trl-conversational``: TRL's explicit-prompt conversational format (``prompt`` the
    conversation so far, ``chosen``/``rejected`` the assistant turn only), which DPOTrainer and ORPOTrainer
    read as is. ``trl-standard``: plain text (``prompt`` the instruction, ``chosen``/``rejected`` the answers).
    """
    if layout == "dpo":
        return frame
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
    context = pl.col("chosen").list.slice(0, pl.col("chosen").list.len() - 1)
    if layout == "trl-conversational":
        pairs = [context.alias("prompt"), pl.col("chosen").list.tail(1), pl.col("rejected").list.tail(1)]
    else:
        answer = pl.col("chosen").list.last().struct.field("content").alias("chosen")
        pairs = [
            pl.col("prompt"),
            answer,
            pl.col("rejected").list.last().struct.field("content").alias("rejected"),
        ]
    return frame.select(*pairs, *[c for c in frame.columns if c not in ("prompt", "chosen", "rejected")])


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


def to_dataset(frame: pl.DataFrame, layout: str = "trl-conversational") -> datasets.Dataset:
    """Return the pairs as a ``datasets.Dataset`` in ``layout`` (by default what TRL's trainers take)."""
    import datasets

    return datasets.Dataset.from_polars(to_layout(frame, layout))
