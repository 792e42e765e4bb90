"""Resources: LLM endpoints (with the embedded local server) and Argilla. Keys come from EnvVar."""

from __future__ import annotations

import dagster as dg
import httpx
from pydantic import PrivateAttr

from pref_assets.clients.argilla import ArgillaClient, ArgillaError
from pref_assets.clients.cache import RequestCache
from pref_assets.clients.limiter import shared_limiter
from pref_assets.clients.llm import ChatClient
from pref_assets.clients.local_server import (
    EMBEDDED_BOTTLENECK,
    EMBEDDED_CONCURRENCY,
    EMBEDDED_MODEL_FILE,
    LocalModelServer,
    default_threads,
)
from pref_assets.clients.retry import RetryPolicy
from pref_assets.clients.transport import DEFAULT_MAX_RESPONSE_BYTES
from pref_assets.core.secrets import Secrets
from pref_assets.settings import EMBEDDED, ArgillaSettings, EndpointSettings


class EndpointConfig(dg.Config):
    """One OpenAI-compatible endpoint; ``api_key`` is set from an environment variable."""

    name: str
    base_url: str
    api_key: str | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_attempts: int = 4
    rpm: float | None = None
    tpm: float | None = None
    structured_output: str = "json_object_schema"
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


class LLMResource(dg.ConfigurableResource):
    """Builds chat clients per endpoint; starts the embedded model server when one is used."""

    endpoints: list[EndpointConfig]
    embedded_threads: int = default_threads()
    cache_path: str | None = None
    private_files: bool = True
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
        identity = _endpoint_identity(endpoint)
        embedded = endpoint.base_url == EMBEDDED
        # llama.cpp's server answers one request at a time: more in flight would only wait there, inside their
        # timeout. Streamed, a request that times out stops its generation.
        concurrency = EMBEDDED_CONCURRENCY if embedded else endpoint.max_concurrency
        client = ChatClient(
            self._base_url(endpoint),
            api_key=endpoint.api_key or None,
            max_concurrency=concurrency,
            max_response_bytes=endpoint.max_response_bytes,
            stream=embedded,
            timeout=httpx.Timeout(endpoint.timeout_s, connect=min(10.0, endpoint.timeout_s)),
            retry=RetryPolicy(max_attempts=endpoint.max_attempts),
            cache=RequestCache(self.cache_path, private=self.private_files) if self.cache_path else None,
            endpoint_id=identity,
            # the other endpoints' keys too: whatever any server echoes, no configured key is stored
            secrets=Secrets.of(*(e.api_key for e in self.endpoints)),
            limiter=shared_limiter(
                identity,
                max_concurrency=concurrency,
                rpm=endpoint.rpm,
                tpm=endpoint.tpm,
            ),
        )
        if embedded:
            client.bottleneck_note = EMBEDDED_BOTTLENECK
        return client

    def _base_url(self, endpoint: EndpointConfig) -> str:
        if endpoint.base_url != EMBEDDED:
            return endpoint.base_url
        if self._server is None:
            self._server = LocalModelServer(n_threads=self.embedded_threads)
        return self._server.start()


def _endpoint_identity(endpoint: EndpointConfig) -> str:
    """Return what identifies an endpoint in cache keys: its URL, or the embedded model file."""
    if endpoint.base_url == EMBEDDED:
        return f"{EMBEDDED}:{EMBEDDED_MODEL_FILE}"
    return endpoint.base_url.rstrip("/")


def build_llm_resource(
    endpoints: list[EndpointSettings], cache_path: str | None, *, private_files: bool = True
) -> LLMResource:
    """Return the LLM resource for the configured endpoints; keys are read through ``dg.EnvVar``."""
    return LLMResource(
        endpoints=[_endpoint_config(e) for e in endpoints], cache_path=cache_path, private_files=private_files
    )


def _endpoint_config(e: EndpointSettings) -> EndpointConfig:
    return EndpointConfig(
        name=e.name,
        base_url=e.base_url,
        api_key=dg.EnvVar(e.api_key_env) if e.api_key_env else None,
        max_concurrency=e.max_concurrency,
        timeout_s=e.timeout_s,
        max_attempts=e.max_attempts,
        rpm=e.rpm,
        tpm=e.tpm,
        structured_output=e.structured_output,
        max_response_bytes=e.max_response_bytes,
    )


class ArgillaResource(dg.ConfigurableResource):
    """Where records go for human review; nothing is pushed unless ``url`` is set.

    ``api_key_env`` only names the key's variable in error messages; ``api_key`` holds the key.
    ``hf_token`` is sent as a bearer token, for an Argilla in a private Hugging Face Space.
    """

    url: str | None = None
    api_key: str | None = None
    hf_token: str | None = None
    dataset: str = "pref-assets"
    workspace: str = "argilla"
    api_key_env: str = "ARGILLA_API_KEY"
    timeout_s: float = 30.0
    max_attempts: int = 4

    def client(self) -> ArgillaClient:
        """Return a client for the configured server."""
        if not self.url:
            raise ArgillaError("no Argilla URL configured (argilla.url in the configuration)")
        if not self.api_key:
            raise ArgillaError(f"no Argilla API key: set the environment variable {self.api_key_env}")
        return ArgillaClient(
            self.url,
            self.api_key,
            timeout=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            key_name=f"the API key in ${self.api_key_env}",
            bearer=self.hf_token or None,
        )

    def target(self) -> str:
        """Return where records go, for messages: ``<url> dataset <workspace>/<dataset>``."""
        return f"{self.url} dataset {self.workspace}/{self.dataset}"


def build_argilla_resource(s: ArgillaSettings) -> ArgillaResource:
    """Return the Argilla resource; its key is read through ``dg.EnvVar``."""
    return ArgillaResource(
        url=s.url,
        api_key=dg.EnvVar(s.api_key_env) if s.url else None,
        hf_token=dg.EnvVar(s.hf_token_env) if s.url and s.hf_token_env else None,
        dataset=s.dataset,
        workspace=s.workspace,
        api_key_env=s.api_key_env,
        timeout_s=s.timeout_s,
        max_attempts=s.max_attempts,
    )
