"""Each asset partition is one Parquet file: ``<base_dir>/<asset>/<partition>.parquet``.

A watched-folder key ``<file name>/batch-00000`` is stored as ``<base_dir>/<asset>/<file name>/batch-00000.parquet``.
An asset hands over a frame, or a dict of partition key -> frame when its step covers a range of batches; an input
is a dict of partition key -> frame (one entry in a one-batch run). Each batch is its own file, loaded and stored
one by one. Every path stays inside
``base_dir``: a partition key that would lead elsewhere (``..``, an absolute path, a backslash, a control character,
a symlink out) fails the step naming the key, before anything is read or written.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from pref_assets.core.paths import PathEscapeError, contained_path, ensure_inside, shown
from pref_assets.private import make_dirs, restrict

# The value an asset hands to this IO manager (inside a MaterializeResult, next to its check results): a frame,
# or a dict of partition key -> frame when the step covers a range of batches.
FRAME = dg.PythonObjectDagsterType((pl.DataFrame, dict), name="PolarsDataFrame")


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores polars frames as Parquet under one base directory; writes are atomic. With ``private_files`` the
    folders it creates are 0700 and the files 0600."""

    base_dir: str
    private_files: bool = True
    identity: dict[str, str] = Field(default_factory=dict, description="the configuration, shown on each output")

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict[str, pl.DataFrame]) -> None:
        keys = self._keys(context)
        frames = obj if isinstance(obj, dict) else {keys[0]: obj}
        if sorted(frames) != sorted(keys):
            raise dg.Failure(description=f"{_name(context)}: got batches {sorted(frames)}, expected {sorted(keys)}")
        paths = {key: self._path(context, key) for key in keys}
        for key, path in paths.items():
            self._write(frames[key], path)
        shown_path = paths[keys[0]] if len(keys) == 1 else paths[keys[0]].parent
        context.add_output_metadata({"path": dg.MetadataValue.path(str(shown_path.resolve())),
                                     "configuration": dg.MetadataValue.json(self.identity)})  # fmt: skip

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict[str, pl.DataFrame]:
        frames = {key: self._read(self._path(context, key)) for key in self._keys(context)}
        return frames if context.has_asset_partitions else frames["all"]

    def _write(self, frame: pl.DataFrame, path: Path) -> None:
        make_dirs(path.parent, private=self.private_files)
        partial = path.with_suffix(".parquet.partial")
        frame.write_parquet(partial)
        if self.private_files:
            restrict(partial)
        os.replace(partial, path)

    @staticmethod
    def _read(path: Path) -> pl.DataFrame:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: upstream partition not materialized yet")
        return pl.read_parquet(path)

    @staticmethod
    def _keys(context: dg.InputContext | dg.OutputContext) -> list[str]:
        return sorted(context.asset_partition_keys) if context.has_asset_partitions else ["all"]

    def _path(self, context: dg.InputContext | dg.OutputContext, key: str) -> Path:
        try:
            return partition_path(self.base_dir, _name(context), key)
        except PathEscapeError as err:  # a retry would meet the same key
            raise dg.Failure(description=f"{_name(context)}: {err}", allow_retries=False) from err


def _name(context: dg.InputContext | dg.OutputContext) -> str:
    return "__".join(context.asset_key.path)


def partition_path(base_dir: str, asset: str, partition: str) -> Path:
    """Return where the IO manager keeps ``asset``'s ``partition``; raise PathEscapeError if that is not inside
    ``base_dir``."""
    folder = contained_path(base_dir, asset, what="asset name")
    contained_path(folder, partition, what="partition key")
    path = folder / f"{partition}.parquet"
    ensure_inside(base_dir, path, what=f"partition key {shown(partition)}")
    return path
