"""The `prompts` read path for one batch on big and small sources: index build, first and later batch, peak RSS.

    .venv/bin/python bench/source.py               # 10^6 and 10^3 rows, JSONL and Parquet, side by side
    .venv/bin/python bench/source.py --rows 200000

Each measurement runs in its own process (peak RSS is that process's); the times exclude imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--one", nargs=3, metavar=("PATH", "STORE", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(Path(args.one[0]), Path(args.one[1]), args.one[2])))
        return
    with tempfile.TemporaryDirectory() as folder:
        table = []
        for n_rows in (args.rows, args.small):
            for suffix in ("jsonl", "parquet"):
                path = Path(folder) / f"prompts-{n_rows}.{suffix}"
                started = time.perf_counter()
                _generate(path, n_rows)
                made = time.perf_counter() - started
                key = f"batch-{(n_rows * 9 // 10 // 1000 * 1000 + 999) // BATCH:05d}"  # holds a repeat of row 5
                store = Path(folder) / f"store-{n_rows}-{suffix}"
                first, later = _run(path, store, key), _run(path, store, key)
                table.append((suffix, n_rows, path.stat().st_size, made, first, later))
        _print(table)


def _generate(path: Path, n_rows: int) -> None:
    import polars as pl

    i = pl.int_range(n_rows)
    frame = pl.select(  # every 1000th row repeats row 5 in another case and spacing
        instruction=pl.when(i % 1000 == 999)
        .then(pl.lit("PROMPT 5 :  explain topic 5 in simple words."))
        .otherwise(pl.format("Prompt {} : explain topic {} in simple words.", i, i % 997)),
        topic=pl.format("topic-{}", i % 37),
    )
    frame.write_ndjson(path) if path.suffix == ".jsonl" else frame.write_parquet(path, row_group_size=50_000)


def _run(path: Path, store: Path, key: str) -> dict:
    command = [sys.executable, __file__, "--one", str(path), str(store), key]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def _measure(path: Path, store: Path, key: str) -> dict:
    from pref_assets.core.ids import source_row_ids
    from pref_assets.core.prompts import normalize_rows
    from pref_assets.settings import SourceSettings
    from pref_assets.sources.batches import count_rows, read_source_batch

    source = SourceSettings(kind="files", paths=[str(path)])
    started = time.perf_counter()
    n_rows = count_rows(source, store)  # what listing the partitions does: builds the index the first time
    counted = time.perf_counter()
    read = read_source_batch(source, key, BATCH, store)
    row_key = source_row_ids(key, BATCH)
    rows = normalize_rows(read.rows, {}, max_chars=source.max_prompt_chars, originals=read.originals,
                          row_key=lambda i: row_key(read.start + i))  # fmt: skip
    done = time.perf_counter()
    return {
        "count_s": counted - started,
        "batch_s": done - counted,
        "rows": n_rows,
        "duplicates": sum(r.duplicate_of is not None for r in rows),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _print(table: list) -> None:
    print(f"{'source':<8} {'rows':>9} {'MB':>6} {'gen s':>6} | {'index build s':>13} {'1st batch s':>11} "
          f"{'1st RSS MB':>10} | {'count s':>8} {'batch s':>8} {'RSS MB':>7} | dup")  # fmt: skip
    for suffix, n_rows, size, made, first, later in table:
        print(f"{suffix:<8} {n_rows:>9} {size / 1e6:>6.1f} {made:>6.2f} | {first['count_s']:>13.3f} "
              f"{first['batch_s']:>11.3f} {first['rss_mb']:>10.0f} | {later['count_s']:>8.3f} "
              f"{later['batch_s']:>8.3f} {later['rss_mb']:>7.0f} | {later['duplicates']}")  # fmt: skip
    small = {s: later for s, n, _, _, _, later in table if n == min(r[1] for r in table)}
    for suffix, n_rows, _, _, _, later in table:
        if n_rows != min(r[1] for r in table):
            base = small[suffix]
            ratio = (later["count_s"] + later["batch_s"]) / (base["count_s"] + base["batch_s"])
            print(f"{suffix}: {n_rows} rows, index reused: count + batch {ratio:.2f}x the small source (target <= 2x)")


if __name__ == "__main__":
    main()
