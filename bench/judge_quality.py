"""Judge quality figures on one batch: parse success, re-asks, first-position win rate, ties.

    .venv/bin/python bench/judge_quality.py --target fake --prompts 200
    .venv/bin/python bench/judge_quality.py --target embedded --prompts 24 --aspects helpfulness,honesty

Runs the real pipeline (all six assets, one partition) against the embedded model or the fake
OpenAI-compatible server (random but schema-valid verdicts, with a share of malformed ones) and
prints the ratings and pairs reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl

from pref_assets.core.quality import judge_report, pair_report
from pref_assets.core.rows import PairRow, RatingRow
from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.defs.schemas import from_frame
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.fake_openai import run_fake_openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["embedded", "fake"], default="fake")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--aspects", default="overall-rating")
    parser.add_argument("--malformed", type=float, default=0.05, help="fake server: share of malformed verdicts")
    parser.add_argument("--position-swap", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store, _endpoint(args) as endpoint:
        settings = _settings(args, endpoint, store)
        started = time.perf_counter()
        result = (
            build_definitions(settings)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key="batch-00000", instance=dg.DagsterInstance.ephemeral())
        )
        wall = time.perf_counter() - started
        ratings = from_frame(pl.read_parquet(Path(store) / "ratings" / "batch-00000.parquet"), RatingRow)
        pairs = from_frame(pl.read_parquet(Path(store) / "dpo_pairs" / "batch-00000.parquet"), PairRow)
    print(
        f"target={args.target} prompts={args.prompts} aspects={args.aspects} run_ok={result.success} wall={wall:.1f}s"
    )
    print("judge:", json.dumps(judge_report(ratings), indent=2))
    print("pairs:", json.dumps(pair_report(pairs), indent=2))


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace) -> Iterator[EndpointSettings]:
    if args.target == "embedded":
        yield EndpointSettings(name="llm", base_url="embedded", max_concurrency=2)
        return
    with run_fake_openai(malformed=args.malformed, seed=11) as server:
        yield EndpointSettings(name="llm", base_url=server.base_url, max_concurrency=64,
                               structured_output="json_schema")  # fmt: skip


def _settings(args: argparse.Namespace, endpoint: EndpointSettings, store: str) -> Settings:
    model = "smollm2-135m-instruct" if args.target == "embedded" else "fake-model"
    generators = [
        ModelSettings(name=f"gen-{t}", endpoint="llm", model=model, params={"temperature": t, "max_tokens": 64})
        for t in (0.2, 1.0)
    ]
    judge = JudgeSettings(name="judge", endpoint="llm", model=model, aspects=args.aspects.split(","),
                          params={"temperature": 0.0, "max_tokens": 384}, position_swap=args.position_swap)  # fmt: skip
    return Settings(storage_dir=store, batch_size=args.prompts, source=SourceSettings(limit=args.prompts),
                    endpoints=[endpoint], generators=generators, judge=judge)  # fmt: skip


if __name__ == "__main__":
    main()
