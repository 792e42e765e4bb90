"""Resources: LLM endpoints (with the embedded local server) and Argilla, built from the settings.

Each resource holds its settings section as it is (``EndpointSettings``, ``ArgillaSettings``); the keys are the
only other values, and they come from ``dg.EnvVar``, so they are never in run config or metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import dagster as dg
from pydantic import Field, PrivateAttr

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
from pref_assets.clients.shared_limits import StoreSpec
from pref_assets.core.secrets import Secrets, secret_fingerprint
from pref_assets.settings import EMBEDDED, ArgillaSettings, EndpointSettings, LimitsSettings, Settings


class LLMResource(dg.ConfigurableResource):
    """Builds chat clients per endpoint; starts the embedded model server when one is used.

    ``api_keys`` maps an endpoint's name to its key (read through ``dg.EnvVar`` from the variable its
    ``api_key_env`` names); an endpoint without a key has no entry. ``limits`` (or an endpoint's own) says where
    its limits are counted: ``local`` keeps them in ``limits_dir`` (without one, per process), ``redis`` at the URL
    ``redis_urls`` holds under the name of its ``redis_url_env`` (read through ``dg.EnvVar``).
    """

    endpoints: list[EndpointSettings]
    api_keys: dict[str, str] = Field(default_factory=dict)
    embedded_threads: int = default_threads()
    cache_path: str | None = None
    private_files: bool = True
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings(backend="process"))
    limits_dir: str | None = None
    redis_urls: dict[str, str] = Field(default_factory=dict)
    _server: LocalModelServer | None = PrivateAttr(default=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def endpoint(self, name: str) -> EndpointSettings:
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
            api_key=self.api_keys.get(name) or None,
            max_concurrency=concurrency,
            max_response_bytes=endpoint.max_response_bytes,
            stream=embedded,
            timeout=endpoint.timeout_s,
            retry=RetryPolicy(max_attempts=endpoint.max_attempts),
            cache=RequestCache(self.cache_path, private=self.private_files) if self.cache_path else None,
            endpoint_id=identity,
            # the other endpoints' keys too: whatever any server echoes, no configured key is stored
            secrets=Secrets.of(*self.api_keys.values()),
            limiter=shared_limiter(
                identity,
                max_concurrency=concurrency,
                rpm=endpoint.rpm,
                tpm=endpoint.tpm,
                store=None if embedded else self._store(endpoint),
                # servers count limits per key: another key is another budget
                scope=f"#{secret_fingerprint(key)}" if (key := self.api_keys.get(name)) else "",
            ),
        )
        if embedded:
            client.bottleneck_note = EMBEDDED_BOTTLENECK
        return client

    def _store(self, endpoint: EndpointSettings) -> StoreSpec | None:
        """Return where the endpoint's limits are shared with other processes, or None for this process only."""
        limits = endpoint.limits or self.limits
        if limits.backend == "local" and self.limits_dir:
            return StoreSpec("local", self.limits_dir, limits.lease_ttl_s)
        if limits.backend == "redis":
            url = self.redis_urls.get(limits.redis_url_env)
            if not url:
                raise ValueError(
                    f"endpoint {endpoint.name}: limits.backend is redis but the environment variable "
                    f"{limits.redis_url_env} (limits.redis_url_env) holds no Redis URL"
                )
            return StoreSpec("redis", url, limits.lease_ttl_s)
        return None

    def prepare(self, names: Iterable[str], log: Callable[[str], None]) -> None:
        """Start the embedded model server when one of endpoints ``names`` is embedded and it is not running yet,
        logging that it starts and how long it took to answer."""
        embedded = [self.endpoint(n) for n in names if self.endpoint(n).base_url == EMBEDDED]
        if not embedded or self._server is not None:
            return
        log("starting the embedded model (llama.cpp server with SmolLM2-135M-Instruct)")
        started = time.monotonic()
        self._base_url(embedded[0])
        log(f"embedded model ready in {time.monotonic() - started:.1f} s")

    def _base_url(self, endpoint: EndpointSettings) -> str:
        if endpoint.base_url != EMBEDDED:
            return endpoint.base_url
        if self._server is None:
            self._server = LocalModelServer(n_threads=self.embedded_threads)
        return self._server.start()


def _endpoint_identity(endpoint: EndpointSettings) -> str:
    """Return what identifies an endpoint in cache keys: its URL, or the embedded model file."""
    if endpoint.base_url == EMBEDDED:
        return f"{EMBEDDED}:{EMBEDDED_MODEL_FILE}"
    return endpoint.base_url.rstrip("/")


def build_llm_resource(settings: Settings) -> LLMResource:
    """Return the LLM resource of the configured endpoints; keys are read through ``dg.EnvVar``."""
    return LLMResource(
        endpoints=settings.endpoints,
        api_keys={e.name: dg.EnvVar(e.api_key_env) for e in settings.endpoints if e.api_key_env},
        cache_path=settings.cache_path(),
        private_files=settings.private_files,
        limits=settings.limits,
        limits_dir=settings.limits_dir(),
        redis_urls={env: dg.EnvVar(env) for env in _redis_url_envs(settings)},
    )


def _redis_url_envs(settings: Settings) -> list[str]:
    """Return the variables holding the Redis URLs of the endpoints whose limits are kept in Redis."""
    chosen = [e.limits or settings.limits for e in settings.endpoints if e.base_url != EMBEDDED]
    return sorted({limits.redis_url_env for limits in chosen if limits.backend == "redis"})


class ArgillaResource(dg.ConfigurableResource):
    """Where records go for human review; nothing is pushed unless ``settings.url`` is set.

    ``api_key`` holds the key and ``hf_token`` the bearer token for an Argilla in a private Hugging Face Space,
    both read through ``dg.EnvVar`` from the variables the settings name.
    """

    settings: ArgillaSettings
    api_key: str | None = None
    hf_token: str | None = None

    @property
    def url(self) -> str | None:
        """Return the server's URL, or None when records are not pushed."""
        return self.settings.url

    @property
    def dataset(self) -> str:
        """Return the dataset's name."""
        return self.settings.dataset

    @property
    def workspace(self) -> str:
        """Return the workspace's name."""
        return self.settings.workspace

    def client(self) -> ArgillaClient:
        """Return a client for the configured server."""
        if not self.url:
            raise ArgillaError("no Argilla URL configured (argilla.url in the configuration)")
        if not self.api_key:
            raise ArgillaError(f"no Argilla API key: set the environment variable {self.settings.api_key_env}")
        return ArgillaClient(
            self.url,
            self.api_key,
            timeout=self.settings.timeout_s,
            retry=RetryPolicy(max_attempts=self.settings.max_attempts),
            key_name=f"the API key in ${self.settings.api_key_env}",
            bearer=self.hf_token or None,
        )

    def target(self) -> str:
        """Return where records go, for messages: ``<url> dataset <workspace>/<dataset>``."""
        return f"{self.url} dataset {self.workspace}/{self.dataset}"


def build_argilla_resource(settings: ArgillaSettings) -> ArgillaResource:
    """Return the Argilla resource; its keys are read through ``dg.EnvVar`` (only when a URL is set)."""
    return ArgillaResource(
        settings=settings,
        api_key=dg.EnvVar(settings.api_key_env) if settings.url else None,
        hf_token=dg.EnvVar(settings.hf_token_env) if settings.url and settings.hf_token_env else None,
    )
