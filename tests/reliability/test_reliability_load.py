"""Load: 5,000 prompts in one partition, two generators and a judge, through a zero-latency server.

The run happens in its own process so that its peak RSS is its own. Throughput and memory are printed
and written to ``load_report.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from reliability_support import PIPELINE_STAGES, fake_settings, read_stage, run_driver, write_prompts

from pref_assets.clients.cache import RequestCache
from pref_assets.testing.fake_openai import run_fake_openai

N = 5_000
PARTITION = "batch-00000"
MAX_RSS_BYTES = 1.5 * 2**30


@pytest.mark.slow
def test_five_thousand_prompts_in_one_process(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    write_prompts(source, N)
    with run_fake_openai(seed=9) as server:
        settings = fake_settings(server.base_url, tmp_path / "store", source, batch_size=N)
        run = run_driver(settings, PARTITION, tmp_path, timeout=600)
        stats = server.stats()

    assert run["success"], run["failures"]
    calls = 3 * N
    assert stats["requests"] == calls and stats["by_status"] == {"200": calls}
    ids = set(read_stage(settings.storage_dir, "prompts", PARTITION)["prompt_id"])
    assert len(ids) == N
    for stage in PIPELINE_STAGES[1:]:
        frame = read_stage(settings.storage_dir, stage, PARTITION)
        assert frame.height == (2 * N if stage == "generations_by_model" else N), stage
        assert set(frame["prompt_id"]) == ids, stage
        assert frame.filter(pl.col("status") == "failed").is_empty(), stage
    cache = RequestCache(settings.cache_path())
    assert cache.count() == calls
    cache.close()

    rss = run["max_rss_kb"] * 1024
    report = {
        "prompts": N,
        "calls": calls,
        "run_seconds": round(run["elapsed_s"], 1),
        "calls_per_second": round(calls / run["elapsed_s"], 1),
        "peak_rss_mib": round(rss / 2**20, 1),
    }
    (tmp_path / "load_report.json").write_text(json.dumps(report, indent=2))
    print("\nload report: " + json.dumps(report))
    assert rss < MAX_RSS_BYTES
