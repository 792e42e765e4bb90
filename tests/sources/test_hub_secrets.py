"""A Hub (or an HF_ENDPOINT mirror) that echoes the request headers in its errors never gets the token into a
message: reading a source, or publishing the set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pref_assets.core.prompts import PromptSourceError
from pref_assets.hub_upload import PublishError, push
from pref_assets.settings import SourceSettings
from pref_assets.sources.hub import read_hub
from pref_assets.testing.echo_server import refusing_server

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
    with refusing_server(_echo) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(PublishError) as info:
            push(tmp_path, "me/prefs", TOKEN, private=True)
    message = str(info.value)
    assert message.startswith(f"not pushed to me/prefs at {endpoint}: ") and "rejected ...." in message
    assert _leaks(message) == [] and info.value.__cause__ is None and info.value.__suppress_context__
