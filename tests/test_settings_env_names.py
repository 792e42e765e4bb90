"""A secret pasted where the name of its environment variable belongs is refused at load, without being shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pref_assets.settings import ArgillaSettings, EndpointSettings, PublishSettings, SettingsError, load_settings

ENDPOINTS = (
    "endpoints:\n  - {{name: remote, base_url: 'https://llm.example.com/v1', api_key_env: '{secret}'}}\n"
    "generators:\n  - {{name: a, endpoint: remote, model: m}}\n  - {{name: b, endpoint: remote, model: n}}\n"
    "judge: {{name: j, endpoint: remote, model: m}}\n"
)
SECRETS = [
    "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",  # OpenAI style, dashes
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",  # Hugging Face token: letters, digits and _ only
    "argilla.apikey",  # Argilla's default key
    "Bearer sk-abcdefgh12345678",
    "xoxb-1234567890-abcdefghij",
    "AbCdEf0123456789GhIjKlMn",  # a random mix, no prefix
]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize(
    ("field", "document"),
    [
        ("endpoints.0.api_key_env", ENDPOINTS),
        ("argilla.api_key_env", "argilla: {{url: 'http://localhost:6900', api_key_env: '{secret}'}}\n"),
        ("argilla.hf_token_env", "argilla: {{url: 'http://localhost:6900', hf_token_env: '{secret}'}}\n"),
        ("publish.token_env", "publish: {{repo_id: me/prefs, token_env: '{secret}'}}\n"),
    ],
)
def test_a_secret_in_an_env_setting_is_refused_naming_the_field_only(
    tmp_path: Path, secret: str, field: str, document: str
) -> None:
    config = tmp_path / "pref_assets.yaml"
    config.write_text(document.format(secret=secret))
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert f"{field}: Value error, must name the environment variable" in message
    assert secret not in message and secret.lower() not in message.lower()


NAMES = ["HF_TOKEN", "ARGILLA_API_KEY", "MY_LLM_KEY_2", "OpenAI_API_KEY_v2_backup", "_x", "hf_token"]
BUILDERS = {
    "api_key_env": lambda value: EndpointSettings(name="e", base_url="http://x/v1", api_key_env=value),
    "hf_token_env": lambda value: ArgillaSettings(hf_token_env=value),
    "token_env": lambda value: PublishSettings(token_env=value),
}


@pytest.mark.parametrize(("secret", "name"), list(zip(SECRETS, NAMES, strict=True)))
@pytest.mark.parametrize("field", BUILDERS)
def test_names_are_accepted_and_secrets_refused_without_repeating_them(secret: str, name: str, field: str) -> None:
    assert getattr(BUILDERS[field](name), field) == name
    with pytest.raises(ValidationError) as info:
        BUILDERS[field](secret)
    assert secret not in str(info.value)
