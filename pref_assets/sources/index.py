"""Row indexes of prompt sources, built in one pass per source version and stored under ``<storage_dir>/index``.

An index has one row per source row: where the row is (``offset`` and ``length`` in bytes for JSONL and CSV),
the number its ``source_ref`` shows (``line``), its duplicate key (``key``, null for a row that fails
normalization), and the position and number of the first row with the same key (``first``, ``first_line``).
A batch reads its slice of the index, then only its rows; repeats of earlier batches are found through ``first``.

The stored file is named after the source and a digest of its version (path, size, modification time) and of what
the keys depend on (column mapping, ``max_prompt_chars``); a changed file gets a new index, and the old one is
removed. Files are Arrow IPC, memory-mapped when read, so a batch touches only its slice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from pref_assets.private import make_dirs

log = logging.getLogger(__name__)

INDEX_VERSION = "1"
INDEX_DIR = "index"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(slots=True)
class Scan:
    """What one pass over a source gives, row by row (``offsets``/``lengths`` only for byte-addressable files)."""

    lines: array = field(default_factory=lambda: array("q"))
    keys: list[bytes | None] = field(default_factory=list)
    offsets: array | None = None
    lengths: array | None = None
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowIndex:
    """A built or stored index: ``table`` (the columns above) and the scan's metadata."""

    table: pa.Table
    meta: Mapping[str, str]

    @property
    def rows(self) -> int:
        """Return the number of rows the source holds."""
        return self.table.num_rows

    def slice(self, start: int, stop: int) -> dict[str, list]:
        """Return the index rows [start, stop) as lists by column."""
        return self.table.slice(start, max(0, stop - start)).to_pydict()

    def find(self, keys: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
        """Return the first position and number of each of ``keys`` present in this source."""
        if not keys:
            return {}
        import pyarrow.compute as pc  # here: only sources of several files look keys up, and it is slow to import

        hits = self.table.filter(pc.is_in(self.table["key"], value_set=pa.array(keys, pa.binary())))
        found = hits.select(["key", "first", "first_line"]).to_pydict()
        return {k: (f, n) for k, f, n in zip(found["key"], found["first"], found["first_line"], strict=True)}


def version_digest(*parts: object) -> str:
    """Return a digest of what an index depends on."""
    text = "\x1f".join(map(str, (INDEX_VERSION, *parts)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def file_version(path: Path, mapping: Mapping[str, str], max_chars: int) -> tuple[str, str]:
    """Return the (source name, version digest) an index of file ``path`` is stored under."""
    resolved = path.resolve()
    info = resolved.stat()
    name = f"{_UNSAFE.sub('_', path.name)[:60]}-{version_digest(resolved)[:8]}"
    return name, version_digest(resolved, info.st_size, info.st_mtime_ns, sorted(mapping.items()), max_chars)


def stored_index(index_dir: Path | None, name: str, version: str, build: Callable[[], Scan]) -> RowIndex:
    """Return the index ``name``/``version`` from ``index_dir``, building and storing it when absent.

    A build that raises stores nothing; without ``index_dir`` (or when it cannot be written) the index is built
    in memory only.
    """
    return stored_table(index_dir, name, version, lambda: _index(build()))


def stored_table(index_dir: Path | None, name: str, version: str, build: Callable[[], RowIndex]) -> RowIndex:
    """Return the stored table ``name``/``version`` (any columns, one row per source row), building and storing it
    when absent, as ``stored_index`` does for row indexes."""
    target = None if index_dir is None else index_dir / f"{name}-{version}.arrow"
    if target is not None and target.is_file():
        try:
            return _read(target)
        except (OSError, pa.ArrowInvalid) as err:  # a torn or foreign file: built again below
            log.warning("index %s unreadable (%s); rebuilding it", target, err)
    index = build()
    if target is not None:
        _store(index, target, name)
    return index


def _index(scan: Scan) -> RowIndex:
    frame = pl.DataFrame(
        {
            "offset": pl.Series(scan.offsets if scan.offsets is not None else [None] * len(scan.lines), dtype=pl.Int64),
            "length": pl.Series(scan.lengths if scan.lengths is not None else [None] * len(scan.lines), dtype=pl.Int64),
            "line": pl.Series(scan.lines, dtype=pl.Int64),
            "key": pl.Series(scan.keys, dtype=pl.Binary),
        }
    )
    keyed = pl.col("key").is_not_null()
    frame = frame.with_row_index("pos").with_columns(
        first=pl.when(keyed).then(pl.col("pos").first().over("key")).cast(pl.Int64),
        first_line=pl.when(keyed).then(pl.col("line").first().over("key")),
    ).drop("pos")
    return RowIndex(frame.to_arrow(), dict(scan.meta))


def _read(path: Path) -> RowIndex:
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()  # the buffers keep the mapping open
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return RowIndex(table.replace_schema_metadata(None), meta)


def _store(index: RowIndex, target: Path, name: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        make_dirs(target.parent, private=True)  # a first run may create storage_dir itself: keep it private
        table = index.table.replace_schema_metadata({k.encode(): v.encode() for k, v in index.meta.items()})
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=65_536)
        os.replace(tmp, target)
    except OSError as err:
        log.warning("index %s not stored (%s); it is rebuilt next time", target, err)
        tmp.unlink(missing_ok=True)
        return
    for old in target.parent.glob(f"{name}-*.arrow"):
        if old != target:
            old.unlink(missing_ok=True)
