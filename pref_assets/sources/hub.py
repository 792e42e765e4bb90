"""Hugging Face Hub datasets through ``datasets.load_dataset``; offline fails fast with alternatives."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from pref_assets.core.decontam import BenchmarkIndex
from pref_assets.core.prompts import PromptSourceError, RawRow, check_columns
from pref_assets.core.secrets import Secrets
from pref_assets.settings import DedupeSettings, SourceSettings
from pref_assets.sources.dupkeys import duplicate_keys
from pref_assets.sources.index import RowIndex, Scan, stored_index, version_digest
from pref_assets.sources.neardup import CHUNK, Chunk, known_repeats, near_version, stored_near

_CHUNK = 20_000

_ALTERNATIVES = (
    "download it elsewhere and point source.kind: files at the JSONL/Parquet/CSV copy, or use source.kind: embedded"
)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Return whether the Hub answers within ``timeout`` seconds."""
    try:
        httpx.head(hub_endpoint(), timeout=timeout)
    except httpx.TransportError:
        return False
    return True


def latest_revision(repo_id: str, *, timeout: float = 10.0) -> str:
    """Return the commit the Hub dataset ``repo_id`` is at now (its default branch); raise PromptSourceError."""
    from huggingface_hub import get_token  # the token of HF_TOKEN or of `huggingface-cli login`

    token = get_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{hub_endpoint()}/api/datasets/{repo_id}", headers=headers, timeout=timeout)
    except httpx.TransportError as err:
        raise PromptSourceError(f"{repo_id!r}: the Hub is unreachable ({type(err).__name__})") from err
    if response.status_code != 200:
        raise PromptSourceError(f"{repo_id!r}: the Hub answered HTTP {response.status_code}")
    try:
        return str(response.json()["sha"])
    except (ValueError, KeyError, TypeError) as err:
        raise PromptSourceError(f"{repo_id!r}: the Hub's answer has no revision") from err


def pinned(source: SourceSettings, revision: str | None) -> SourceSettings:
    """Return ``source`` reading Hub revision ``revision`` (when given) instead of its configured one."""
    return source.model_copy(update={"revision": revision}) if revision and source.kind == "hub" else source


def read_hub(source: SourceSettings) -> list[RawRow]:
    """Return the rows of ``source.repo_id`` / ``source.split``."""
    if not source.repo_id:
        raise PromptSourceError("source.kind is 'hub' but source.repo_id is not set")
    offline = _offline_requested() or not hub_reachable()
    dataset = _load(source, offline)
    where = f"hub:{source.repo_id}[{source.split}]"
    rows = [RawRow(f"{where}:row {i + 1}", row) for i, row in enumerate(dataset)]
    check_columns(dataset.column_names, source.columns, where)
    return rows


def read_hub_rows(
    source: SourceSettings,
    start: int,
    stop: int,
    index_dir: Path | None,
    dedupe: DedupeSettings | None = None,
    benchmarks: Sequence[BenchmarkIndex] = (),
) -> tuple[list[RawRow], RowIndex, RowIndex | None]:
    """Return rows [start, stop) of ``source.repo_id`` / ``source.split`` (within ``source.limit``), the split's
    row index and, with ``dedupe``, its near-duplicate index. Only these rows become Python values; the indexes
    are built once per dataset version."""
    if not source.repo_id:
        raise PromptSourceError("source.kind is 'hub' but source.repo_id is not set")
    dataset = _load(source, _offline_requested() or not hub_reachable())
    where = f"hub:{source.repo_id}[{source.split}]"
    check_columns(dataset.column_names, source.columns, where)
    total = min(len(dataset), source.limit) if source.limit else len(dataset)
    fingerprint = getattr(dataset, "_fingerprint", None)
    name = f"hub-{version_digest(source.repo_id, source.split)[:8]}"
    version = version_digest(fingerprint, total, sorted(source.columns.items()), source.max_prompt_chars)
    index = stored_index(index_dir if fingerprint else None, name, version, lambda: _scan(dataset, total, source))
    part = dataset.select(range(start, max(start, min(stop, total))))
    rows = [RawRow(f"{where}:row {start + i + 1}", row) for i, row in enumerate(part)]
    near = None
    if dedupe is not None:

        def chunks() -> Iterator[Chunk]:
            return _near_chunks(dataset, total, index, where)

        near_dir = index_dir if fingerprint else None
        near_key = near_version(dedupe, version)
        near = stored_near(near_dir, f"near-{name}", near_key, chunks, source.columns, source.max_prompt_chars, dedupe,
                           benchmarks)  # fmt: skip
    return rows, index, near


def _near_chunks(dataset, total: int, index: RowIndex, where: str) -> Iterator[Chunk]:  # noqa: ANN001 - datasets
    for lo in range(0, total, CHUNK):
        hi = min(lo + CHUNK, total)
        rows = [RawRow(f"{where}:row {lo + i + 1}", row) for i, row in enumerate(dataset.select(range(lo, hi)))]
        yield rows, known_repeats(index, lo, hi)


def _scan(dataset, total: int, source: SourceSettings) -> Scan:  # noqa: ANN001 - datasets.Dataset, imported lazily
    names = [source.columns.get(f, f) for f in ("instruction", "system_prompt", "messages")]
    columns = dataset.select_columns([n for n in dict.fromkeys(names) if n in dataset.column_names])
    scan = Scan()
    for offset in range(0, total, _CHUNK):
        part = columns[offset : min(offset + _CHUNK, total)]
        n_rows = min(offset + _CHUNK, total) - offset
        scan.keys += duplicate_keys(part, n_rows, source.columns, max_chars=source.max_prompt_chars)
        scan.lines.extend(range(offset + 1, offset + n_rows + 1))
    return scan


def hub_endpoint() -> str:
    """Return the Hub's address: ``HF_ENDPOINT`` (a mirror) or huggingface.co, read at each call."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_secrets(*tokens: str | None) -> Secrets:
    """Return the masks of the Hub token in use (``HF_TOKEN`` or the login's) and of ``tokens``."""
    from huggingface_hub import get_token

    return Secrets.of(get_token(), *tokens)


def load_hub_dataset(source: SourceSettings, config: str | None = None):  # noqa: ANN201 - datasets.Dataset
    """Return the split ``source`` names (of dataset configuration ``config``), offline when the Hub is out of reach."""
    return _load(source, _offline_requested() or not hub_reachable(), config)


def _offline_requested() -> bool:
    return any(os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))  # fmt: skip


def _load(source: SourceSettings, offline: bool, config: str | None = None):  # noqa: ANN202 - datasets.Dataset, imported lazily (about 2 s)
    """Load from the Hub (configuration ``config`` of the dataset, if given), or offline from the local cache only
    (no retries against an absent network)."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    if offline:
        hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(source.repo_id, config, split=source.split, revision=source.revision)
    except (ConnectionError, OSError, ValueError) as err:
        state = "the Hub is unreachable and there is no cached copy" if offline else "the Hub refused"
        # A Hub (or HF_ENDPOINT mirror) that echoes the request headers puts the token in its error: masked
        # before the cut, and the original error is not chained (it would reach the event log).
        reason = hub_secrets().cut(str(err), 300)
        raise PromptSourceError(
            f"cannot load {source.repo_id!r} split {source.split!r}: {state} ({type(err).__name__}: "
            f"{reason}); {_ALTERNATIVES}"
        ) from None
    finally:
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved
