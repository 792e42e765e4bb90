"""The Hub revision sensor against a local stand-in for the Hub's dataset API (real HTTP on loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from pref_assets.definitions import build_definitions
from pref_assets.defs.sensors import HUB_REVISION_TAG, HUB_SENSOR_NAME
from pref_assets.settings import Settings, SourceSettings
from pref_assets.sources.hub import pinned

REPO = "someone/prompts"


class FakeHub(ThreadingHTTPServer):
    """Answers ``GET /api/datasets/<repo>`` with the current ``sha``."""

    sha = "a" * 40


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == f"/api/datasets/{REPO}"
        body = json.dumps({"id": REPO, "sha": self.server.sha} if found else {"error": "not found"}).encode()  # type: ignore[attr-defined]
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.shutdown()


def _hub_defs(**source: object) -> dg.Definitions:
    return build_definitions(
        Settings(source=SourceSettings(kind="hub", repo_id=REPO, limit=25, **source), batch_size=10)
    )


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    return defs.resolve_sensor_def(HUB_SENSOR_NAME).evaluate_tick(context)


def test_a_new_revision_reruns_every_batch_pinned_to_it(hub: FakeHub) -> None:
    defs = _hub_defs()
    with dg.instance_for_test() as instance:
        first = _tick(defs, instance, None)
        assert first.run_requests == [] and first.cursor == hub.sha  # the revision at the first look
        assert _tick(defs, instance, first.cursor).run_requests == []
        hub.sha = "b" * 40
        changed = _tick(defs, instance, first.cursor)
    assert changed.cursor == hub.sha
    assert [r.partition_key for r in changed.run_requests] == ["batch-00000", "batch-00001", "batch-00002"]
    assert {r.tags[HUB_REVISION_TAG] for r in changed.run_requests} == {hub.sha}
    assert len({r.run_key for r in changed.run_requests}) == 3


def test_an_unreachable_hub_skips_the_tick_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with dg.instance_for_test() as instance:
        result = _tick(_hub_defs(), instance, "c" * 40)
    assert result.run_requests == [] and "unreachable" in (result.skip_message or "")


def test_the_sensor_exists_only_for_a_hub_source_that_follows_a_branch() -> None:
    names = {s.name for s in _hub_defs().sensors}
    assert HUB_SENSOR_NAME in names
    assert _hub_defs().resolve_sensor_def(HUB_SENSOR_NAME).default_status == dg.DefaultSensorStatus.STOPPED
    assert HUB_SENSOR_NAME not in {s.name for s in _hub_defs(revision="v1.0").sensors}
    assert HUB_SENSOR_NAME not in {s.name for s in build_definitions(Settings()).sensors}


def test_a_run_tag_pins_the_revision_a_batch_reads() -> None:
    source = SourceSettings(kind="hub", repo_id=REPO)
    assert pinned(source, "d" * 40).revision == "d" * 40
    assert pinned(source, None) == source
    assert pinned(SourceSettings(), "d" * 40) == SourceSettings()
