"""The resources carry the settings sections as they are, and the keys only as environment variables."""

from __future__ import annotations

import dagster as dg

from pref_assets.defs.resources import build_argilla_resource, build_llm_resource
from pref_assets.settings import ArgillaSettings, EndpointSettings, Settings


def test_the_llm_resource_holds_the_endpoint_settings_and_reads_keys_from_the_environment() -> None:
    endpoint = EndpointSettings(name="remote", base_url="http://llm.test/v1", api_key_env="TEST_LLM_KEY", rpm=60)
    settings = Settings(endpoints=[*Settings().endpoints, endpoint])
    llm = build_llm_resource(settings)
    assert llm.endpoints == settings.endpoints
    assert llm.api_keys == {"remote": dg.EnvVar("TEST_LLM_KEY")}


def test_the_argilla_resource_holds_its_settings_and_reads_its_key_only_when_a_url_is_set() -> None:
    off = build_argilla_resource(ArgillaSettings())
    assert off.url is None and off.api_key is None and off.settings == ArgillaSettings()
    on = build_argilla_resource(ArgillaSettings(url="http://argilla.test", api_key_env="TEST_ARGILLA_KEY"))
    assert (on.url, on.dataset, on.workspace) == ("http://argilla.test", "pref-assets", "argilla")
    assert on.api_key == dg.EnvVar("TEST_ARGILLA_KEY") and on.hf_token is None
    assert on.target() == "http://argilla.test dataset argilla/pref-assets"
