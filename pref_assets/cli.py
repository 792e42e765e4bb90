"""``pref-assets``: run the pipeline for one batch and say where the pairs are; summarize a batch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from pref_assets.clients.cache import RequestCache
from pref_assets.core.batching import batch_key
from pref_assets.defs.io_manager import partition_path
from pref_assets.export import LAYOUTS, collect_pairs, to_layout, write_pairs
from pref_assets.settings import load_settings

ASSETS = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records")
REVIEW_ASSETS = ("human_feedback", "preference_pairs")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="pref-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize all six assets for one batch (default: the first)")
    run.add_argument("--partition", default=batch_key(0))
    summary = sub.add_parser("summary", help="print rows in, pairs out and failures of one batch")
    summary.add_argument("--partition", default=batch_key(0))
    export = sub.add_parser("export", help="write the ok pairs of all batches to a .parquet or .jsonl file")
    export.add_argument("path")
    export.add_argument("--asset", default="dpo_pairs", help="the pairs asset to read (default: dpo_pairs)")
    export.add_argument("--layout", choices=LAYOUTS, default="dpo", help="column layout (default: dpo)")
    cache = sub.add_parser("cache", help="show or clear the request cache")
    cache.add_argument("action", choices=["stats", "clear"])
    args = parser.parse_args(argv)
    if args.command == "cache":
        print(_cache_command(args.action))
        return 0
    if args.command == "export":
        frame = to_layout(collect_pairs(load_settings().storage_dir, args.asset), args.layout)
        print(f"wrote {frame.height} pairs to {write_pairs(frame, args.path).resolve()}")
        return 0
    if args.command == "run" and not _materialize(args.partition):
        return 1
    print(summarize(args.partition))
    return 0


def _materialize(partition: str) -> bool:
    import dagster as dg

    from pref_assets.definitions import JOB_NAME, defs

    job = defs.resolve_job_def(JOB_NAME)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
    return result.success


def _cache_command(action: str) -> str:
    path = load_settings().cache_path()
    if path is None:
        return "the request cache is off (cache.enabled: false)"
    cache = RequestCache(path)
    try:
        if action == "clear":
            return f"removed {cache.clear()} cached responses from {path}"
        return f"{cache.count()} cached responses in {path}"
    finally:
        cache.close()


def summarize(partition: str) -> str:
    """Return a short report of one batch: counts per stage and where the pairs file is."""
    base = load_settings().storage_dir
    lines = [f"batch {partition}:"]
    for name in (*ASSETS, *REVIEW_ASSETS):
        path = partition_path(base, name, partition)
        if not path.is_file():
            lines.append(f"  {name:<22} not materialized")
            continue
        counts = dict(pl.read_parquet(path, columns=["status"])["status"].value_counts().iter_rows())
        lines.append(f"  {name:<22} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    pairs = partition_path(base, "dpo_pairs", partition)
    lines.append(f"DPO pairs (rows with status 'ok'): {Path(pairs).resolve()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
