"""``pref-assets``: run a batch through every asset and say where the pairs are; summarize a batch; export the
final set; send judged batches to Argilla and read their labels back; show or clear the request cache.

The configuration is found as Dagster finds it (``$PREF_ASSETS_CONFIG``, else ``./pref_assets.yaml``, else the
embedded default); ``summary`` also falls back on the configuration the batch's last run was made with.
Runs go to the Dagster instance in ``$DAGSTER_HOME`` (the current folder when unset, as ``./dev.sh`` does).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pref_assets.clients.cache import RequestCache
from pref_assets.core.batching import batch_key
from pref_assets.core.paths import PathEscapeError
from pref_assets.defs.io_manager import partition_path
from pref_assets.export import LAYOUTS, collect_pairs, partition_files, to_layout, write_pairs
from pref_assets.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import dagster as dg

ASSETS = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records")
REVIEW_STAGES = ("human_feedback", "preference_pairs")
EXPORT_SUFFIXES = (".parquet", ".jsonl")
# Seconds between two looks at a running step's events.
_POLL_S = 1.0


class CommandError(Exception):
    """A command cannot do what was asked; the message says why and what to do (no traceback)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (CommandError, SettingsError, PathEscapeError) as err:
        print(f"pref-assets {args.command}: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pref-assets", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run preference_job (every asset) for one batch, printing its progress")
    run.add_argument("--partition", default=batch_key(0))
    summary = sub.add_parser("summary", help="print rows in, pairs out and failures of one batch")
    summary.add_argument("--partition", default=batch_key(0))
    export = sub.add_parser("export", help="write the ok pairs of all batches to a .parquet or .jsonl file")
    export.add_argument("path")
    export.add_argument("--asset", default="dpo_pairs", help="the pairs asset to read (default: dpo_pairs)")
    export.add_argument("--layout", choices=LAYOUTS, default="dpo", help="column layout (default: dpo)")
    review = sub.add_parser("review", help="push judged batches to Argilla, or pull their labels into the final set")
    review.add_argument("action", choices=["push", "pull"])
    review.add_argument("--partition", action="append", help="only this batch (repeatable; default: every batch)")
    cache = sub.add_parser("cache", help="show or clear the request cache")
    cache.add_argument("action", choices=["stats", "clear"])
    batches = sub.add_parser("batches", help="list, poll, cancel or resubmit the LLM batch jobs (mode: batch)")
    batches.add_argument("action", choices=["list", "poll", "cancel", "resubmit"])
    batches.add_argument("job", nargs="?", help="the job (cancel; resubmit: default every failed request)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "cache":
        print(_cache_command(args.action))
        return 0
    if args.command == "batches":
        from pref_assets.defs.batches import batches_command

        try:
            print(batches_command(load_settings(), args.action, args.job))
        except (ValueError, KeyError, RuntimeError) as err:  # a bad job name, configuration or provider answer
            raise CommandError(str(err)) from err
        return 0
    if args.command == "export":
        print(_export(args.path, args.asset, args.layout))
        return 0
    if args.command == "review":
        return 0 if _review(args.action, args.partition) else 1
    if args.command == "run":
        ok = _materialize(args.partition)
        print(summarize(args.partition))
        return 0 if ok else 1
    print(summarize(args.partition))
    return 0


def _export(path: str, asset: str, layout: str) -> str:
    target = Path(path)
    if target.suffix not in EXPORT_SUFFIXES:
        raise CommandError(f"{path}: give a file name ending in .parquet or .jsonl (CSV cannot hold the messages)")
    settings = load_settings()
    pairs = collect_pairs(settings.storage_dir, asset)
    if pairs.is_empty():
        where = Path(settings.storage_dir, asset).resolve()
        raise CommandError(f"no pairs in {where}: no batch of {asset} is materialized yet (./dev.sh run makes one)")
    frame = to_layout(pairs, layout)
    return f"wrote {frame.height} pairs to {write_pairs(frame, target).resolve()}"


def _instance() -> dg.DagsterInstance:
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    return dg.DagsterInstance.get()


def _materialize(partition: str, job_name: str | None = None, assets: list[str] | None = None) -> bool:
    """Run ``job_name`` (default ``preference_job``) for one batch in this process, printing each step's progress."""
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    from pref_assets.definitions import JOB_NAME, defs

    job = defs.resolve_job_def(job_name or JOB_NAME)
    run_id = make_new_run_id()
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    # Dagster's own console lines are cut to warnings and errors; the steps' progress is printed below.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with _instance() as instance:
        if partition not in job.partitions_def.get_partition_keys(dynamic_partitions_store=instance):
            raise CommandError(f"no batch {partition!r} in this configuration's source")
        _note_other_configuration(instance, job.tags)
        done = threading.Event()
        printer = threading.Thread(target=_print_progress, args=(instance, run_id, done), daemon=True)
        printer.start()
        try:
            result = job.execute_in_process(run_config=quiet, partition_key=partition, instance=instance,
                                            raise_on_error=False, run_id=run_id, asset_selection=selection)  # fmt: skip
        finally:
            done.set()
            printer.join()
    return result.success


def _note_other_configuration(instance: dg.DagsterInstance, tags: Mapping[str, str]) -> None:
    """Say so when the instance's last named run was made with another configuration: their asset histories mix."""
    from pref_assets.defs.jobs import CONFIG_TAG, STORAGE_TAG

    last = next((r for r in instance.get_runs(limit=50) if CONFIG_TAG in r.tags), None)
    if last is None or last.tags[CONFIG_TAG] == tags.get(CONFIG_TAG):
        return
    home = os.environ.get("DAGSTER_HOME", "")
    print(f"note: the last run in the Dagster instance at {home} used another configuration "
          f"({last.tags[CONFIG_TAG]}, storage {last.tags.get(STORAGE_TAG, '?')}); both share one asset history. "
          "Give each configuration its own DAGSTER_HOME to keep them apart.", flush=True)  # fmt: skip


def _print_progress(instance: dg.DagsterInstance, run_id: str, done: threading.Event) -> None:
    """Print each step's start and end (with its row counts) and the steps' own progress lines as they come."""
    start, seen = time.monotonic(), 0
    while True:
        finished = done.wait(_POLL_S)
        entries = instance.all_logs(run_id)
        for entry in entries[seen:]:
            line = _progress_line(entry)
            if line:
                print(f"[{time.monotonic() - start:6.0f} s] {line}", flush=True)
        seen = len(entries)
        if finished:
            return


def _progress_line(entry: dg.EventLogEntry) -> str | None:
    import dagster as dg

    event, step = entry.dagster_event, entry.step_key or ""
    if event is None:  # a step's own log line
        return f"{step}: {entry.user_message}" if step and entry.level >= logging.INFO else None
    kind = event.event_type
    if kind == dg.DagsterEventType.RUN_START:
        return f"run {entry.run_id} of {event.job_name} started"
    if kind == dg.DagsterEventType.STEP_START:
        return f"{step}: started"
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        materialization = event.step_materialization_data.materialization
        meta = materialization.metadata
        counts = ", ".join(f"{k} {meta[k].value}" for k in ("ok", "failed", "skipped") if k in meta and meta[k].value)
        rows = meta.get("dagster/row_count")
        counts = counts or (f"{rows.value} rows" if rows is not None else "done")
        return f"{materialization.asset_key.to_user_string()} [{materialization.partition}]: {counts}"
    if kind == dg.DagsterEventType.STEP_FAILURE:
        message = event.step_failure_data.error.message if event.step_failure_data.error else "failed"
        return f"{step}: FAILED: {message.strip().splitlines()[0][:300]}"
    if kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        evaluation = event.asset_check_evaluation_data
        return None if evaluation.passed else f"{step}: check {evaluation.check_name} did not pass"
    return None


def _review(action: str, only: list[str] | None) -> bool:
    """Push every judged batch to Argilla (``argilla_push_job``), or pull labels for every pushed batch
    (``review_job``: human_feedback and preference_pairs per batch, the published set once at the end)."""
    from pref_assets.defs.jobs import PUSH_JOB_NAME, REVIEW_ASSETS, REVIEW_JOB_NAME

    settings = load_settings()
    if not settings.argilla.url:
        raise CommandError("argilla.url is not set in the configuration; set it (and the key's variable) first")
    upstream = "ratings" if action == "push" else "argilla_records"
    batches = only or _stored_batches(settings, upstream)
    if not batches:
        raise CommandError(f"no batch has {upstream} materialized yet; run the pipeline first (pref-assets run)")
    ok = True
    for i, batch in enumerate(batches):
        print(f"{action} {batch} ({i + 1} of {len(batches)})", flush=True)
        if action == "push":
            ok &= _materialize(batch, PUSH_JOB_NAME)
        else:
            last = i == len(batches) - 1
            ok &= _materialize(batch, REVIEW_JOB_NAME, list(REVIEW_ASSETS if last else REVIEW_ASSETS[:-1]))
    return ok


def _stored_batches(settings: Settings, asset: str) -> list[str]:
    folder = Path(settings.storage_dir) / asset
    if not folder.is_dir():
        return []
    return [f.relative_to(folder).with_suffix("").as_posix() for f in partition_files(folder)]


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


def summary_settings(partition: str) -> tuple[Settings, str]:
    """Return the configuration to summarize ``partition`` with, and where it came from: ``$PREF_ASSETS_CONFIG``,
    ``./pref_assets.yaml``, the configuration file of the batch's last run in the Dagster instance, or the
    embedded default (also when that file is gone: then a warning on stderr says so)."""
    from pref_assets.defs.jobs import EMBEDDED_DEFAULT

    if os.environ.get(CONFIG_ENV):
        return load_settings(), f"{os.environ[CONFIG_ENV]} (from {CONFIG_ENV})"
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return load_settings(), f"{Path(DEFAULT_CONFIG_FILE).resolve()} (./{DEFAULT_CONFIG_FILE})"
    last = _last_run_config(partition)
    if last is None:
        return load_settings(), EMBEDDED_DEFAULT
    if last == EMBEDDED_DEFAULT:
        return load_settings(), f"{EMBEDDED_DEFAULT} (used by the last run of {partition})"
    if Path(last).is_file():
        return load_settings(last), f"{last} (used by the last run of {partition})"
    print(f"warning: {last}, the configuration file of the last run of {partition}, is gone; the embedded default "
          "is read instead, and its storage_dir may not be the one that run wrote to", file=sys.stderr)  # fmt: skip
    return load_settings(), f"{EMBEDDED_DEFAULT} ({last}, used by the last run of {partition}, is gone)"


def _last_run_config(partition: str) -> str | None:
    """Return the ``config_file`` tag of the batch's last run that has one (a path, or the embedded default), or
    None when there is no Dagster instance or no such run."""
    import dagster as dg

    from pref_assets.defs.jobs import CONFIG_FILE_TAG

    if not os.environ.get("DAGSTER_HOME") and not Path("dagster.yaml").is_file():
        return None
    with _instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition}), limit=20)
    return next((run.tags[CONFIG_FILE_TAG] for run in runs if run.tags.get(CONFIG_FILE_TAG)), None)


def summarize(partition: str) -> str:
    """Return a short report of one batch: the configuration read, counts per stage, the published set and
    where the pairs file is."""
    settings, where = summary_settings(partition)
    base = settings.storage_dir
    lines = [f"configuration: {where}; storage_dir: {Path(base).resolve()}", f"batch {partition}:"]
    for name in (*ASSETS, *REVIEW_STAGES):
        path = partition_path(base, name, partition)
        if not path.is_file():
            lines.append(f"  {name:<22} not materialized")
            continue
        counts = dict(pl.read_parquet(path, columns=["status"])["status"].value_counts().iter_rows())
        lines.append(f"  {name:<22} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    published = Path(base, "published", "data", "train.parquet")
    if published.is_file():
        frame = pl.read_parquet(published, columns=["batch"])
        batches = frame["batch"].n_unique()
        lines.append(f"  {'preference_dataset':<22} {frame.height} pairs from {batches} batch{'es' * (batches != 1)}: "
                     f"{published.parent.parent.resolve()}")  # fmt: skip
    else:
        lines.append(f"  {'preference_dataset':<22} not materialized")
    pairs = partition_path(base, "dpo_pairs", partition)
    lines.append(f"DPO pairs (rows with status 'ok'): {Path(pairs).resolve()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
