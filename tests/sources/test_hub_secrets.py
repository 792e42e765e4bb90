"""A Hub (or an HF_ENDPOINT mirror) that echoes the request headers in its errors never gets the token into a
message: reading a source, or publishing the set."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pref_assets.core.prompts import PromptSourceError
from pref_assets.hub_upload import PublishError, push
from pref_assets.settings import SourceSettings
from pref_assets.sources.hub import read_hub

TOKEN = "hf_SENTINELhubToken0123456789abcdef"


def _leaks(text: str) -> list[str]:
    forms = (TOKEN, TOKEN.lower(), TOKEN.upper(), TOKEN[:12])
    return [form for form in forms if form.lower() in text.lower()]


def _echo(headers: Any) -> str:
    """An error text quoting the token so that it straddles character 300, then every header, as is and
    lower-cased."""
    listing = "; ".join(f"{k}: {v}" for k, v in headers.items())
    token = str(headers.get("authorization", "")).removeprefix("Bearer ")
    return "rejected ".ljust(288, ".") + token + f" (headers: {listing}; normalised: {listing.lower()})"


class _EchoHub(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._refuse()

    def _refuse(self) -> None:
        body = json.dumps({"error": _echo(self.headers)}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def _echo_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_hub_refusal_echoing_the_token_is_masked_before_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr("pref_assets.sources.hub.hub_reachable", lambda timeout=3.0: True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(_echo({"authorization": f"Bearer {TOKEN}"}))

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(PromptSourceError) as info:
        read_hub(SourceSettings(kind="hub", repo_id="me/prompts"))
    message = str(info.value)
    assert "the Hub refused (OSError: rejected ...." in message and "***" in message
    assert _leaks(message) == [] and info.value.__cause__ is None and info.value.__suppress_context__


def test_a_publish_refused_by_an_echoing_endpoint_names_it_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "README.md").write_text("card")
    with _echo_hub() as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(PublishError) as info:
            push(tmp_path, "me/prefs", TOKEN, private=True)
    message = str(info.value)
    assert message.startswith(f"not pushed to me/prefs at {endpoint}: ") and "rejected ...." in message
    assert _leaks(message) == [] and info.value.__cause__ is None and info.value.__suppress_context__
