"""Each asset partition is one Parquet file: ``<base_dir>/<asset>/<partition>.parquet``.

A watched-folder key ``<file name>/batch-00000`` is stored as ``<base_dir>/<asset>/<file name>/batch-00000.parquet``.
Every path stays inside ``base_dir``: a partition key that would lead elsewhere (``..``, an absolute path, a
backslash, a control character, a symlink out) fails the step naming the key, before anything is read or written.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl

from pref_assets.core.paths import PathEscapeError, contained_path, ensure_inside, shown
from pref_assets.private import make_dirs, restrict

# The value an asset hands to this IO manager (inside a MaterializeResult, next to its check results).
FRAME = dg.PythonObjectDagsterType(pl.DataFrame, name="PolarsDataFrame")


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores polars frames as Parquet under one base directory; writes are atomic. With ``private_files`` the
    folders it creates are 0700 and the files 0600."""

    base_dir: str
    private_files: bool = True

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        path = self._path(context)
        make_dirs(path.parent, private=self.private_files)
        partial = path.with_suffix(".parquet.partial")
        obj.write_parquet(partial)
        if self.private_files:
            restrict(partial)
        os.replace(partial, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path.resolve()))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: upstream partition not materialized yet")
        return pl.read_parquet(path)

    def _path(self, context: dg.InputContext | dg.OutputContext) -> Path:
        name = "__".join(context.asset_key.path)
        key = context.asset_partition_key if context.has_asset_partitions else "all"
        try:
            return partition_path(self.base_dir, name, key)
        except PathEscapeError as err:  # a retry would meet the same key
            raise dg.Failure(description=f"{name}: {err}", allow_retries=False) from err


def partition_path(base_dir: str, asset: str, partition: str) -> Path:
    """Return where the IO manager keeps ``asset``'s ``partition``; raise PathEscapeError if that is not inside
    ``base_dir``."""
    folder = contained_path(base_dir, asset, what="asset name")
    contained_path(folder, partition, what="partition key")
    path = folder / f"{partition}.parquet"
    ensure_inside(base_dir, path, what=f"partition key {shown(partition)}")
    return path
