"""Script-free document updates for argilla-server's Elasticsearch/OpenSearch engine.

argilla-server 2.8 updates a record's search document with painless scripts when a
human response is created, changed or deleted, and when a suggestion is deleted.
Search back-ends without a script engine (such as osmem-server) reject those
requests. This module replaces the three script-based methods of
``BaseElasticAndOpenSearchEngine`` with a read-modify-write: fetch the document,
change it in Python and index it back, guarded by optimistic concurrency control
(``if_seq_no``/``if_primary_term``) and retried on a version conflict.

``install()`` applies the patch as soon as ``argilla_server.search_engine.commons``
is imported (or at once, when it already is), so importing this module costs
nothing in processes that never load argilla-server.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TARGET_MODULE = "argilla_server.search_engine.commons"
ENGINE_CLASS = "BaseElasticAndOpenSearchEngine"
MAX_ATTEMPTS = 10

Source = dict[str, Any]
Change = Callable[[Source], None]


def _same_id(left: Any, right: Any) -> bool:
    return str(left) == str(right)


def _without_response(source: Source, response_id: Any) -> list[dict[str, Any]]:
    return [item for item in source.get("responses") or [] if not _same_id(item.get("id"), response_id)]


def _conflict_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    try:
        from opensearchpy.exceptions import ConflictError as OpenSearchConflict

        errors.append(OpenSearchConflict)
    except ImportError:
        pass
    try:
        from elasticsearch8 import ConflictError as ElasticConflict

        errors.append(ElasticConflict)
    except ImportError:
        pass
    return tuple(errors)


def _is_opensearch(client: Any) -> bool:
    try:
        from opensearchpy import AsyncOpenSearch
    except ImportError:
        return False
    return isinstance(client, AsyncOpenSearch)


def _as_dict(answer: Any) -> dict[str, Any]:
    body = getattr(answer, "body", answer)
    return dict(body)


async def _put_document(client: Any, index: str, doc_id: str, source: Source, seq_no: int, term: int) -> None:
    guard = {"if_seq_no": seq_no, "if_primary_term": term, "refresh": True}
    if _is_opensearch(client):
        await client.index(index=index, id=doc_id, body=source, **guard)
    else:
        await client.index(index=index, id=doc_id, document=source, **guard)


async def read_modify_write(engine: Any, index: str, doc_id: str, change: Change) -> None:
    """Apply ``change`` to the stored ``_source`` of one document and write it back."""
    conflicts = _conflict_errors()
    for attempt in range(MAX_ATTEMPTS):
        found = _as_dict(await engine.client.get(index=index, id=doc_id))
        source: Source = dict(found["_source"])
        change(source)
        try:
            seq_no, term = found["_seq_no"], found["_primary_term"]
            await _put_document(engine.client, index, doc_id, source, seq_no, term)
            return
        except conflicts:
            if attempt == MAX_ATTEMPTS - 1:
                raise


def _patched_methods(commons: ModuleType) -> dict[str, Callable[..., Any]]:
    index_name = commons.es_index_name_for_dataset

    async def update_record_response(self: Any, response: Any) -> None:
        record = response.record
        entry = self._map_record_response_to_es(response)

        def change(source: Source) -> None:
            source["responses"] = [*_without_response(source, response.id), entry]

        await read_modify_write(self, index_name(record.dataset), str(record.id), change)

    async def delete_record_response(self: Any, response: Any) -> None:
        record = response.record

        def change(source: Source) -> None:
            if source.get("responses") is not None:
                source["responses"] = _without_response(source, response.id)

        await read_modify_write(self, index_name(record.dataset), str(record.id), change)

    async def delete_record_suggestion(self: Any, suggestion: Any) -> None:
        question_name = suggestion.question.name

        def change(source: Source) -> None:
            suggestions = source.get("suggestions")
            if isinstance(suggestions, dict):
                suggestions.pop(question_name, None)

        record_index = index_name(suggestion.record.dataset)
        await read_modify_write(self, record_index, str(suggestion.record_id), change)

    return {
        "update_record_response": update_record_response,
        "delete_record_response": delete_record_response,
        "delete_record_suggestion": delete_record_suggestion,
    }


def apply(commons: ModuleType) -> None:
    """Replace the script-based methods on the engine base class of ``commons``."""
    engine = getattr(commons, ENGINE_CLASS)
    if getattr(engine, "_scriptless_patched", False):
        return
    for name, method in _patched_methods(commons).items():
        method.__qualname__ = f"{ENGINE_CLASS}.{name}"
        setattr(engine, name, method)
    engine._scriptless_patched = True


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        apply(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    """Patch argilla-server's engine now if loaded, else as soon as it is imported."""
    loaded = sys.modules.get(TARGET_MODULE)
    if loaded is not None:
        apply(loaded)
        return
    if not any(isinstance(finder, _PatchingFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchingFinder())
