"""The dataset card's data-quality sections: how the candidates were made, who judged them and how well, what the
prompt checks removed, and how often the judge agrees with the reviewers.

Each function takes the settings, the storage folder and the published pairs and returns ``{title: markdown}``;
``defs/publish.py`` lists them in ``CARD_SECTIONS``. Candidates, principles and judges are those of the
configuration that publishes the set (its identity is in the run's tags and the asset metadata); counts and figures
are read from the stored batches and the last ``judge_calibration``.
"""

from pathlib import Path

import polars as pl

from pref_assets.core.calibration import PANEL
from pref_assets.core.decontam import clean_prompt_counts
from pref_assets.core.feedback import agreement_from_ratings
from pref_assets.core.rows import FeedbackRow, PromptRow, RatingRow
from pref_assets.defs import schemas
from pref_assets.defs.calibration import read_calibration, smoke_test
from pref_assets.export import partition_files
from pref_assets.settings import Settings


def candidates_section(settings: Settings, base: Path, pairs: pl.DataFrame) -> dict[str, str]:
    """Return "Candidates": answers per prompt, per generator, and the principles they were drawn under."""
    del base, pairs
    lines = [f"{settings.candidates_per_prompt} candidate answers per prompt:"]
    for g in settings.generators:
        system = "; with its own system prompt" if g.system_prompt else ""
        lines.append(f"- `{g.name}` (`{g.model}`): {g.num_generations} per prompt{system}")
    principles = settings.principle_texts()
    if principles:
        names = ", ".join(f"`{name}`" for name in principles)
        lines.append(f"\nEach answer was written under one principle (a system prompt drawn per prompt, generator "
                     f"and answer; stored in the `principle` column of the generations): {names}.")  # fmt: skip
    else:
        lines.append("\nNo principles: generators answered the prompt as written.")
    return {"Candidates": "\n".join(lines)}


def judges_section(settings: Settings, base: Path, pairs: pl.DataFrame) -> dict[str, str]:
    """Return "Judges": the panel, and its accuracy on the labelled calibration pairs when ``judge_calibration`` ran."""
    del pairs
    panel = settings.panel
    lines = [f"- `{j.name}` (`{j.model}`), aspects: {', '.join(j.aspects)}" for j in panel]
    if len(panel) > 1:
        lines.append(f"\nAn answer's score is the mean over judges and aspects; a prompt needs at least "
                     f"{settings.min_judges} judge(s) whose verdicts were read.")  # fmt: skip
    report = read_calibration(base)
    if report is None:
        lines.append("\nCalibration: `judge_calibration` has not been run, so the judges' accuracy is not known.")
    else:
        lines.append("\nCalibration on labelled pairs (better answer rated higher, both orders shown):")
        for judge, figures in report.items():
            name = "panel" if judge == PANEL else f"`{judge}`"
            lines.append(f"- {name}: accuracy {_rate(figures.get('accuracy'))}, ties {_rate(figures.get('tie_rate'))}, "
                         f"read {_rate(figures.get('parse_rate'))}")  # fmt: skip
        if smoke_test(settings):
            lines.append("\nThe panel includes the small embedded model: these figures are a smoke test of the "
                         "pipeline, not a measure of a useful judge.")  # fmt: skip
    return {"Judges": "\n".join(lines)}


def prompt_checks_section(settings: Settings, base: Path, pairs: pl.DataFrame) -> dict[str, str]:
    """Return "Prompt checks": repeats, near-duplicates and contaminated prompts removed before any model call."""
    del pairs
    rows = [r for frame in _frames(base, "prompts", ["status", "reason"]) for r in schemas.from_frame(frame, PromptRow)]
    counts = clean_prompt_counts(rows)
    dedupe = settings.dedupe
    near = (f"near-duplicates (estimated Jaccard similarity of word shingles >= {dedupe.near_duplicate_threshold}): "
            f"{counts['near_duplicates']}" if dedupe.near_duplicates else "near-duplicates: not checked")  # fmt: skip
    lines = [f"Of {len(rows)} prompts read:", f"- exact repeats (after normalization): {counts['duplicates']}",
             f"- {near}"]  # fmt: skip
    contaminated = counts["contaminated"]
    if settings.decontaminate:
        for bench in settings.decontaminate:
            lines.append(f"- sharing text with benchmark `{bench.name}`: {contaminated.get(bench.name, 0)}")  # type: ignore[union-attr]
    else:
        lines.append("- decontamination: no benchmark configured")
    return {"Prompt checks": "\n".join(lines)}


def agreement_section(settings: Settings, base: Path, pairs: pl.DataFrame) -> dict[str, str]:
    """Return "Judge and reviewers": how often the judge orders the answers as the reviewers in Argilla do."""
    del settings, pairs
    labelled = [r for f in _frames(base, "human_feedback") for r in schemas.from_frame(f, FeedbackRow)]
    if not any(r.ok for r in labelled):
        return {}
    rated = [r for f in _frames(base, "ratings") for r in schemas.from_frame(f, RatingRow)]
    agreement = agreement_from_ratings(rated, labelled)
    if not agreement.pairs:
        return {"Judge and reviewers": "Reviewers answered, but on no prompt did they put one answer above another."}
    tau = "n/a" if agreement.kendall_tau is None else f"{agreement.kendall_tau:.3f}"
    return {"Judge and reviewers": (
        f"On {agreement.prompts} prompts reviewers scored, the judge ordered {agreement.agreed} of "
        f"{agreement.pairs} answer pairs as they did (pairwise accuracy {_rate(agreement.pairwise_accuracy)}; "
        f"ties by the judge {agreement.judge_ties}); its best answer was theirs on {agreement.top_agreed} of "
        f"{agreement.top_prompts} prompts; mean Kendall's tau-b {tau} over {agreement.tau_prompts} prompts."
    )}  # fmt: skip


def _frames(base: Path, asset: str, columns: list[str] | None = None) -> list[pl.DataFrame]:
    folder = base / asset
    if not folder.is_dir():
        return []
    return [pl.read_parquet(f, columns=columns) for f in partition_files(folder)]


def _rate(value: object) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.1%}"


SECTIONS = [candidates_section, judges_section, prompt_checks_section, agreement_section]
