"""The same workload in distilabel 1.5.3, for the side-by-side figure in bench/engine.py.

    .venvs/distilabel/bin/python bench/distilabel_pipeline.py --base-url URL --prompts-file P.jsonl

LoadDataFromDicts -> 2x TextGeneration (OpenAILLM) -> GroupColumns -> UltraFeedback (overall-rating,
OpenAILLM) -> FormatTextGenerationDPO, cache off, against an OpenAI-compatible server. Prints one
line ``RESULT {"wall_s": ..., "outputs": ...}`` (wall time of ``pipeline.run``, imports excluded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import FormatTextGenerationDPO, GroupColumns, LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback

GENERATORS = (("gen-0.2", 0.2), ("gen-1.0", 1.0))


def build_pipeline(prompts: list[dict[str, Any]], base_url: str, cache_dir: str) -> Pipeline:
    """Return the pipeline over ``prompts`` with every model on ``base_url``."""
    with Pipeline(name="pref-bench", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(data=prompts)
        generators = [
            TextGeneration(
                name=f"generate-{name.replace('.', '-')}",
                llm=_llm(base_url, {"temperature": temperature, "max_new_tokens": 64}),
            )
            for name, temperature in GENERATORS
        ]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "generation_models"])
        judge = UltraFeedback(aspect="overall-rating", llm=_llm(base_url, {"temperature": 0.0, "max_new_tokens": 384}))
        dpo = FormatTextGenerationDPO()
        load >> generators >> group >> judge >> dpo
    return pipeline


def _llm(base_url: str, generation_kwargs: dict[str, Any]) -> OpenAILLM:
    return OpenAILLM(model="fake-model", base_url=base_url, api_key="dummy", generation_kwargs=generation_kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--prompts-file", required=True, type=Path)
    args = parser.parse_args()
    lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
    prompts = [{"instruction": json.loads(line)["instruction"]} for line in lines if line.strip()]
    with tempfile.TemporaryDirectory() as cache_dir:
        pipeline = build_pipeline(prompts, args.base_url, cache_dir)
        started = time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        wall = time.perf_counter() - started
    outputs = len(distiset["default"]["train"])
    print("RESULT " + json.dumps({"wall_s": round(wall, 3), "outputs": outputs}), flush=True)


if __name__ == "__main__":
    main()
