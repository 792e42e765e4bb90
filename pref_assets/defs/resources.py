"""Resources: LLM endpoints (with the embedded local server) and Argilla. Keys come from EnvVar."""

from __future__ import annotations

import httpx
import dagster as dg
from pydantic import PrivateAttr

from pref_assets.clients.argilla import ArgillaClient, ArgillaError
from pref_assets.clients.llm import ChatClient
from pref_assets.clients.local_server import LocalModelServer, default_threads
from pref_assets.clients.retry import RetryPolicy
from pref_assets.settings import EMBEDDED, ArgillaSettings, EndpointSettings


class EndpointConfig(dg.Config):
    """One OpenAI-compatible endpoint; ``api_key`` is set from an environment variable."""

    name: str
    base_url: str
    api_key: str | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_attempts: int = 4
    structured_output: str = "json_object_schema"


class LLMResource(dg.ConfigurableResource):
    """Builds chat clients per endpoint; starts the embedded model server when one is used."""

    endpoints: list[EndpointConfig]
    embedded_threads: int = default_threads()
    _server: LocalModelServer | None = PrivateAttr(default=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def endpoint(self, name: str) -> EndpointConfig:
        """Return the endpoint called ``name``."""
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(f"unknown endpoint {name!r}; known: {[e.name for e in self.endpoints]}")

    def client(self, name: str) -> ChatClient:
        """Return a new async client for endpoint ``name`` (use it as an async context manager)."""
        endpoint = self.endpoint(name)
        return ChatClient(
            self._base_url(endpoint),
            api_key=endpoint.api_key or None,
            max_concurrency=endpoint.max_concurrency,
            timeout=httpx.Timeout(endpoint.timeout_s, connect=min(10.0, endpoint.timeout_s)),
            retry=RetryPolicy(max_attempts=endpoint.max_attempts),
        )

    def _base_url(self, endpoint: EndpointConfig) -> str:
        if endpoint.base_url != EMBEDDED:
            return endpoint.base_url
        if self._server is None:
            self._server = LocalModelServer(n_threads=self.embedded_threads)
        return self._server.start()


def build_llm_resource(endpoints: list[EndpointSettings]) -> LLMResource:
    """Return the LLM resource for the configured endpoints; keys are read through ``dg.EnvVar``."""
    return LLMResource(endpoints=[_endpoint_config(e) for e in endpoints])


def _endpoint_config(e: EndpointSettings) -> EndpointConfig:
    return EndpointConfig(
        name=e.name,
        base_url=e.base_url,
        api_key=dg.EnvVar(e.api_key_env) if e.api_key_env else None,
        max_concurrency=e.max_concurrency,
        timeout_s=e.timeout_s,
        max_attempts=e.max_attempts,
        structured_output=e.structured_output,
    )


class ArgillaResource(dg.ConfigurableResource):
    """Where records go for human review; nothing is pushed unless ``url`` is set."""

    url: str | None = None
    api_key: str | None = None
    dataset: str = "pref-assets"
    workspace: str = "argilla"

    def client(self) -> ArgillaClient:
        """Return a client for the configured server."""
        if not self.url:
            raise ArgillaError("no Argilla URL configured (argilla.url in the configuration)")
        if not self.api_key:
            raise ArgillaError("no Argilla API key: set the environment variable named by argilla.api_key_env")
        return ArgillaClient(self.url, self.api_key)


def build_argilla_resource(s: ArgillaSettings) -> ArgillaResource:
    """Return the Argilla resource; its key is read through ``dg.EnvVar``."""
    return ArgillaResource(
        url=s.url, api_key=dg.EnvVar(s.api_key_env) if s.url else None, dataset=s.dataset, workspace=s.workspace
    )
