"""Near-duplicate detection on 10^5 prompts: the stored index's build and a later batch, time and peak RSS, and the
same MinHash/LSH search done with datasketch (when installed) for comparison.

    .venv/bin/python bench/near_duplicates.py                 # 100,000 prompts, 2% of them near-duplicates
    .venv/bin/python bench/near_duplicates.py --rows 20000

Each measurement runs in its own process (peak RSS is that process's); times exclude imports. The prompts are
sentences of 8 to 60 words from a 20,000-word vocabulary; a near-duplicate copies an earlier prompt and appends,
drops or replaces one word near its end. `planted` is how many were written, `found` how many the search names.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--one", nargs=3, metavar=("WHAT", "PATH", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        what, path, store = args.one
        measure = {"index": _index, "datasketch": _datasketch}[what]
        print(json.dumps(measure(Path(path), Path(store), args.threshold, args.num_perm)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompts.jsonl"
        planted = _generate(path, args.rows)
        store = Path(folder) / "store"
        common = ["--threshold", str(args.threshold), "--num-perm", str(args.num_perm)]
        first = _run("index", path, store, common)
        later = _run("index", path, store, common)
        other = _run("datasketch", path, store, common)
    print(f"{args.rows} prompts ({path.name}), {planted} near-duplicates planted, threshold {args.threshold}, "
          f"{args.num_perm} permutations")  # fmt: skip
    print(f"{'':<34} {'seconds':>8} {'peak RSS MB':>12} {'found':>7}")
    print(f"{'first batch (builds both indexes)':<34} {first['seconds']:>8.2f} {first['rss_mb']:>12.0f} "
          f"{first['found']:>7}")  # fmt: skip
    print(f"{'  of which the near-duplicate index':<34} {first['near_s']:>8.2f}")
    print(f"{'later batch (index stored)':<34} {later['seconds']:>8.3f} {later['rss_mb']:>12.0f} {later['found']:>7}")
    if "skipped" in other:
        print(f"datasketch: {other['skipped']}")
    else:
        print(f"{'datasketch MinHash + MinHashLSH':<34} {other['seconds']:>8.2f} {other['rss_mb']:>12.0f} "
              f"{other['found']:>7}   (search only, same shingles, texts already in memory)")  # fmt: skip


def _generate(path: Path, n_rows: int) -> int:
    rng = random.Random(17)
    letters = "bcdfgklmnprst"
    vocab = [f"{rng.choice(letters)}{rng.choice('aeiou')}{rng.choice(letters)}{i}" for i in range(20_000)]
    texts: list[str] = []
    planted = 0
    for i in range(n_rows):
        if i > 100 and rng.random() < 0.02:
            words = texts[rng.randrange(i)].split()
            at = rng.randrange(max(0, len(words) - 3), len(words))
            change = rng.choice(("append", "drop", "replace"))
            if change == "append":
                words.append(rng.choice(vocab))
            elif change == "drop" and len(words) > 20:
                del words[at]
            else:
                words[at] = rng.choice(vocab)
            planted += 1
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(8, 60))))
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"instruction": t}) + "\n" for t in texts)
    return planted


def _run(what: str, path: Path, store: Path, extra: list[str]) -> dict:
    command = [sys.executable, __file__, "--one", what, str(path), str(store), *extra]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def _index(path: Path, store: Path, threshold: float, num_perm: int) -> dict:
    from pref_assets.settings import DedupeSettings, SourceSettings
    from pref_assets.sources import neardup
    from pref_assets.sources.batches import read_source_batch

    dedupe = DedupeSettings(near_duplicate_threshold=threshold, num_perm=num_perm)
    source = SourceSettings(kind="files", paths=[str(path)])
    spent = []
    real = neardup.find_near

    def timed(*args: object) -> tuple:
        started = time.perf_counter()
        out = real(*args)
        spent.append(time.perf_counter() - started)
        return out

    neardup.find_near = timed
    started = time.perf_counter()
    read = read_source_batch(source, "batch-00000", BATCH, store, dedupe)
    seconds = time.perf_counter() - started
    index = next((store / "index").glob("near-*.arrow"))
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(index))).read_all()
    return {
        "seconds": seconds,
        "near_s": sum(spent),
        "found": table.num_rows - table["near"].null_count,
        "batch_near": len(read.near),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _datasketch(path: Path, store: Path, threshold: float, num_perm: int) -> dict:
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        return {"skipped": "not installed (uv pip install datasketch to compare)"}
    from pref_assets.core.dedupe import words

    texts = [json.loads(line)["instruction"] for line in path.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, MinHash] = {}
    found = 0
    for i, text in enumerate(texts):
        tokens = words(text)
        shingles = {" ".join(tokens[k : k + 3]) for k in range(max(1, len(tokens) - 2))}
        signature = MinHash(num_perm=num_perm)
        signature.update_batch([s.encode("utf-8") for s in shingles])
        if any(signature.jaccard(kept[j]) >= threshold for j in lsh.query(signature)):
            found += 1
        else:
            lsh.insert(i, signature)
            kept[i] = signature
    return {"seconds": time.perf_counter() - started, "found": found,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


if __name__ == "__main__":
    main()
