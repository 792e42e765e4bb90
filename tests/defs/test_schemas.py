from __future__ import annotations

import polars as pl

from pref_assets.core.rows import GenerationRow, Judgement, RatingRow
from pref_assets.defs import schemas

JUDGEMENT = Judgement(aspect="helpfulness", ratings=[4, None], shown_order=[1, 0], failure=None, attempts=2)
RATED = RatingRow(
    row_id="batch-00000#0",
    prompt_id="p0",
    messages=[{"role": "user", "content": "hi"}],
    generation_models=["a", "b"],
    generations=["x", None],
    judgements=[JUDGEMENT],
    scores=[4, None],
)
FAILED = RatingRow(row_id="batch-00000#1", status="failed", failed_stage="ratings", reason="judge_request_failed")


def test_rows_go_to_a_frame_of_their_schema_and_come_back_equal() -> None:
    out = schemas.to_frame([RATED, FAILED], RatingRow)
    assert out.schema == schemas.RATINGS
    assert out["judgements"][0][0]["aspect"] == "helpfulness" and out["scores"].to_list() == [[4.0, None], None]
    assert schemas.from_frame(out, RatingRow) == [RATED, FAILED]


def test_an_empty_batch_is_an_empty_frame_of_the_schema() -> None:
    out = schemas.to_frame([], GenerationRow)
    assert (out.height, out.schema) == (0, schemas.GENERATIONS)
    assert schemas.from_frame(out, GenerationRow) == []


def test_a_stored_partition_without_a_column_reads_with_its_default_and_extra_columns_are_ignored() -> None:
    stored = schemas.to_frame([GenerationRow(row_id="b#0", model="a", truncated=True)], GenerationRow)
    older = stored.drop("truncated", "cached").with_columns(pl.lit(1).alias("dropped_later"))
    assert schemas.from_frame(older, GenerationRow) == [GenerationRow(row_id="b#0", model="a")]
