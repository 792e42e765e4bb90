"""One polars schema per asset, derived from the stage's row type (``pref_assets.core.rows``), so every
partition's Parquet file has the same columns and types, and the UI shows what each column means."""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import dagster as dg
import polars as pl

from pref_assets.core import rows as r

TEXT = pl.String
_SCALARS: dict[Any, pl.DataType] = {str: pl.String(), int: pl.Int64(), float: pl.Float64(), bool: pl.Boolean()}


def schema_of(row_type: type) -> pl.Schema:
    """Return the polars schema of a row type: its columns in stored order, each typed from its annotation."""
    hints = r.column_types(row_type)
    return pl.Schema({name: polars_type(hints[name]) for name in r.column_names(row_type)})


def polars_type(hint: Any) -> pl.DataType:
    """Return the polars type of a column annotation (``X | None`` is X: every column may be null)."""
    hint = _without_none(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    if get_origin(hint) is Sequence:
        return pl.List(polars_type(get_args(hint)[0]))
    if is_typeddict(hint):
        return pl.Struct({k: polars_type(v) for k, v in get_type_hints(hint).items()})
    if is_dataclass(hint):
        return pl.Struct(dict(schema_of(hint)))
    raise TypeError(f"no polars type for the annotation {hint!r}")


def column_schema(row_type: type) -> dg.TableSchema:
    """Return the Dagster column schema of a row type: names, types and descriptions, as the UI shows them."""
    docs, schema = r.column_docs(row_type), schema_of(row_type)
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype), description=docs[name]) for name, dtype in schema.items()]
    )


def _without_none(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


PROMPTS = schema_of(r.PromptRow)
GENERATIONS = schema_of(r.GenerationRow)
GROUPED = schema_of(r.GroupedRow)
RATINGS = schema_of(r.RatingRow)
DPO_PAIRS = schema_of(r.PairRow)
ARGILLA_RECORDS = schema_of(r.RecordRow)
HUMAN_FEEDBACK = schema_of(r.FeedbackRow)
PREFERENCE_PAIRS = schema_of(r.PreferenceRow)


def to_frame(rows: Sequence[r.StageRow], row_type: type[r.StageRow]) -> pl.DataFrame:
    """Return typed rows as a frame of their stage's schema (built column by column)."""
    schema = schema_of(row_type)
    return pl.DataFrame({name: r.column_values(rows, row_type, name) for name in schema.names()}, schema=schema)


def from_frame(data: pl.DataFrame, row_type: type[r.Row]) -> list[r.Row]:
    """Return a stage's frame as typed rows (columns a stored partition lacks take their defaults)."""
    names = [name for name in r.column_names(row_type) if name in data.columns]
    return [r.from_dict(row_type, dict(zip(names, values, strict=True))) for values in data.select(names).iter_rows()]
