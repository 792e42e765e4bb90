"""Project configuration: a YAML file (``PREF_ASSETS_CONFIG`` or ./pref_assets.yaml) or the embedded default.

API keys are never in this file: an endpoint names the environment variable that holds its key.
The sections a Dagster resource holds (``EndpointSettings``, ``ArgillaSettings``) are Dagster ``Config`` classes:
the resources carry them as they are, and read only the keys themselves through ``dg.EnvVar``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import dagster as dg
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pref_assets.core.cost import cost_usd
from pref_assets.core.principles import builtin_text
from pref_assets.core.rubric import get_aspect

EMBEDDED = "embedded"
CONFIG_ENV = "PREF_ASSETS_CONFIG"
DEFAULT_CONFIG_FILE = "pref_assets.yaml"

StructuredOutput = Literal["json_object_schema", "json_schema", "tgi_grammar", "none"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Tokens that are also valid names: Hugging Face (hf_...), Stripe-style (sk_...), GitHub (ghp_..., github_pat_...),
# or a long run mixing upper case, lower case and digits, which no one names a variable.
_TOKEN_PREFIX = re.compile(r"(?:hf|sk|rk|pk|ghp|gho|ghs|github_pat)_\w{16,}")
_LONG_RUN = re.compile(r"[A-Za-z0-9]{20,}")


def _token_like(value: str) -> bool:
    runs = _LONG_RUN.findall(value)
    mixed = any(not r.isupper() and not r.islower() and not r.isalpha() and not r.isdigit() for r in runs)
    return mixed or bool(_TOKEN_PREFIX.fullmatch(value))


def _env_name(value: str) -> str:
    """Accept an environment variable's name; refuse anything else without repeating it (a key pasted where its
    variable's name belongs would otherwise be printed as "environment variable ... is not set")."""
    if not _ENV_NAME.fullmatch(value) or _token_like(value):
        raise ValueError(
            "must name the environment variable that holds the secret (letters, digits and _), not hold the "
            "secret itself; the value is not shown"
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


# errors never repeat the input: it may be a credential put in the wrong place
_STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class _Strict(BaseModel):
    model_config = _STRICT


class _ResourceSettings(dg.Config):
    """A section a Dagster resource holds as it is (its run config shows these fields; no key is among them)."""

    model_config = _STRICT


class LimitsSettings(_ResourceSettings):
    """Where an endpoint's ``max_concurrency``, ``rpm`` and ``tpm`` are counted: in each process (``process``), for
    every process of the machine in files under ``<storage_dir>/limits/`` (``local``), or for every process of
    every machine in Redis (``redis``, its URL in the variable ``redis_url_env`` names)."""

    backend: Literal["process", "local", "redis"] = "local"
    redis_url_env: EnvName = "REDIS_URL"
    lease_ttl_s: float = Field(
        6.0, ge=1, le=300, description="a request slot of a process that died is free again after this long"
    )


class EndpointSettings(_ResourceSettings):
    """An OpenAI-compatible server. ``base_url: embedded`` is the local llama.cpp server."""

    name: str
    base_url: str
    api_key_env: EnvName | None = None
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(4, ge=1)
    rpm: float | None = Field(None, gt=0, description="requests per minute; learned from x-ratelimit-* if unset")
    tpm: float | None = Field(None, gt=0, description="tokens per minute; learned from x-ratelimit-* if unset")
    structured_output: StructuredOutput = "json_object_schema"
    limits: LimitsSettings | None = Field(None, description="where its limits are counted (default: top-level limits)")
    max_response_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="the longest response body read from this endpoint, in bytes (default 8 MiB); a longer answer "
        "is not read further, not stored and not retried: its row fails as response_too_large",
    )
    mode: Literal["online", "batch"] = Field("online", description="batch: calls go through the Batch API")
    completion_window: str = Field("24h", description="batch mode: the completion_window of each batch job")
    batch_discount: float = Field(0.5, gt=0, le=1, description="batch price as a fraction of the online price")
    batch_poll_interval_s: int = Field(60, ge=1, description="batch mode: how often the llm_batches sensor polls")
    batch_max_attempts: int = Field(3, ge=1, description="batch mode: submissions of one request at most")
    batch_fallback: Literal["none", "online"] = Field(
        "none", description="batch mode: a request still failing after batch_max_attempts is sent online"
    )
    batch_max_requests_per_file: int = Field(50_000, ge=1, description="batch mode: requests per input file")
    batch_max_bytes_per_file: int = Field(200 * 1024 * 1024, ge=1024, description="batch mode: bytes per input file")

    @model_validator(mode="after")
    def _check_base_url(self) -> EndpointSettings:
        if self.base_url == EMBEDDED:
            return self
        scheme, _, rest = self.base_url.partition("://")
        if scheme not in ("http", "https") or not rest:
            raise ValueError(f"endpoint {self.name}: base_url must start with http:// or https://, or be {EMBEDDED!r}")
        if "@" in rest.split("/", 1)[0]:
            # shown without the URL: it holds a credential
            raise ValueError(
                f"endpoint {self.name}: base_url holds a user name or password; secrets never go in this file. "
                "Put the key in an environment variable and name it in api_key_env."
            )
        problem = _base_url_problem(self.base_url)
        if problem:
            raise ValueError(f"endpoint {self.name}: base_url {problem}")
        return self


def _base_url_problem(url: str) -> str | None:
    """Return what is wrong with an http(s) base URL, without repeating it, or None."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "holds a space or a control character"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    if not parts.hostname:
        return "has no host name"
    path = parts.path.rstrip("/")
    if re.search(r"/(v\d+)/\1$", path):
        return "repeats its version segment (like /v1/v1); give the URL ending in a single /v1"
    if path.endswith("/chat/completions"):
        return "ends in /chat/completions, which the client adds: give the URL ending in /v1"
    return None


class ModelSettings(_Strict):
    """A model on an endpoint. ``name`` labels its answers in the dataset; ``model`` is the API id."""

    name: str
    endpoint: str
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    price_input_per_million: float = Field(0.0, ge=0, description="USD per million prompt tokens")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per million completion tokens")
    batch_price_input_per_million: float | None = Field(None, ge=0, description="batch mode (default: discounted)")
    batch_price_output_per_million: float | None = Field(None, ge=0, description="batch mode (default: discounted)")

    def batch_prices(self, discount: float) -> tuple[float, float]:
        """Return USD per million (input, output) tokens in batch mode: the batch prices, else ``discount`` times
        the online ones."""
        price_in, price_out = self.batch_price_input_per_million, self.batch_price_output_per_million
        return (
            self.price_input_per_million * discount if price_in is None else price_in,
            self.price_output_per_million * discount if price_out is None else price_out,
        )

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return what these tokens cost at this model's prices."""
        return cost_usd(prompt_tokens, completion_tokens, self.price_input_per_million, self.price_output_per_million)


class GeneratorSettings(ModelSettings):
    """A generator: ``num_generations`` answers to every prompt (separate requests, each with a seed of its own),
    each under its own ``system_prompt`` (and principle, when ``principles`` are configured)."""

    num_generations: int = Field(1, ge=1, le=16, description="answers (candidates) per prompt from this generator")
    system_prompt: str | None = Field(None, max_length=20_000, description="sent to this generator only")

    @model_validator(mode="after")
    def _check_params(self) -> GeneratorSettings:
        if "n" in self.params:
            raise ValueError(
                f"generator {self.name}: params.n is not supported; set num_generations (one request per candidate, "
                "each with its own seed and cache entry)"
            )
        return self


class PrincipleSettings(_Strict):
    """A principle: a built-in one by ``name`` (helpfulness, honesty, truthfulness, calibrated_uncertainty), or
    any ``name`` with its own ``text``."""

    name: str = Field(min_length=1, max_length=100)
    text: str | None = Field(None, min_length=1, max_length=20_000)

    @model_validator(mode="after")
    def _check_known(self) -> PrincipleSettings:
        if self.text is None:
            builtin_text(self.name)
        return self


class JudgeSettings(ModelSettings):
    """The judge model and the rubric aspects it rates."""

    aspects: list[str] = Field(default_factory=lambda: ["overall-rating"], min_length=1)
    max_answers_per_call: int = Field(
        8, ge=2, le=64, description="more answers than this are judged in several calls sharing one anchor answer"
    )
    shuffle: bool = True
    max_reasks: int = Field(1, ge=0)
    position_swap: bool = False
    rate_single_answers: bool = Field(False, description="judge prompts left with one answer (no pair possible)")

    @model_validator(mode="after")
    def _check_aspects(self) -> JudgeSettings:
        for name in self.aspects:
            get_aspect(name)
        return self


class SourceSettings(_Strict):
    """Where prompts come from: the embedded set, local files, a Hugging Face Hub dataset, or a watched folder.

    ``kind: folder`` watches ``folder``: the ``new_prompt_files`` sensor looks every ``poll_interval_s``
    seconds and turns each new or changed file (untouched for ``min_file_age_s`` seconds) into batches.
    ``kind: hub`` without a ``revision`` follows the dataset's default branch: the ``new_hub_revision`` sensor
    (off by default) looks every ``hub_poll_interval_s`` seconds and reruns every batch on a new revision.
    """

    kind: Literal["embedded", "files", "hub", "folder"] = "embedded"
    paths: list[str] = Field(default_factory=list)
    folder: str | None = None
    poll_interval_s: int = Field(30, ge=1, description="folder sources: seconds between two looks at the folder")
    min_file_age_s: float = Field(2.0, ge=0, description="folder sources: ignore files modified more recently")
    hub_poll_interval_s: int = Field(600, ge=30, description="hub sources: seconds between two looks at the Hub")
    columns: dict[str, str] = Field(default_factory=dict)
    repo_id: str | None = None
    split: str = "train"
    revision: str | None = None
    limit: int | None = Field(None, ge=1)
    max_prompt_chars: int = Field(20_000, ge=1)

    @model_validator(mode="after")
    def _check_folder(self) -> SourceSettings:
        if self.kind == "folder" and not self.folder:
            raise ValueError("source.kind is 'folder' but source.folder is not set")
        return self


class CacheSettings(_Strict):
    """The request cache: completed responses are reused, so no request is paid for twice."""

    enabled: bool = True
    path: str | None = None


class PairSettings(_Strict):
    """How chosen/rejected are picked: the highest score is chosen; the rejected answer is the lowest
    (``lowest``) or a random lower-scored one (``random_lower``, seeded by the prompt id), at least
    ``min_margin`` below the chosen one."""

    rejected: Literal["lowest", "random_lower"] = "lowest"
    min_margin: float = Field(0.0, ge=0)


class ArgillaSettings(_ResourceSettings):
    """Argilla target; records are pushed, and human labels read back, only when ``url`` is set.

    ``sensor_interval_s`` is how often the review sensor polls for new responses (it runs only when
    ``url`` is set); ``timeout_s`` and ``max_attempts`` apply to every request. A private Hugging Face
    Space also needs a Hugging Face token: ``hf_token_env`` names its environment variable.
    """

    url: str | None = None
    api_key_env: EnvName = "ARGILLA_API_KEY"
    hf_token_env: EnvName | None = None
    dataset: str = "pref-assets"
    workspace: str = "argilla"
    timeout_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(4, ge=1)
    sensor_interval_s: int = Field(60, ge=1)


class QualitySettings(_Strict):
    """Limits of the per-batch quality warnings: a batch past one is flagged in the UI, not stopped."""

    max_empty_answer_rate: float = Field(0.05, ge=0, le=1, description="generations answered with no text")
    max_judge_parse_failure_rate: float = Field(0.1, ge=0, le=1, description="judge answers unparseable after re-asks")
    max_tie_rate: float = Field(0.5, ge=0, le=1, description="judged prompts whose answers all got the same score")


class ScheduleSettings(_Strict):
    """The ``next_batches`` schedule (stopped until turned on): how often, and how many batches a tick."""

    cron: str = "0 * * * *"
    batches_per_tick: int = Field(2, ge=1)


class BackfillSettings(_Strict):
    """How a backfill of many batches is split into runs: up to ``partitions_per_run`` batches a run (each run
    pays its own launch and start-up), or every selected batch in one run with ``single_run``."""

    partitions_per_run: int = Field(10, ge=1, description="batches one backfill run covers")
    single_run: bool = Field(
        False, description="one run per backfill, as `dagster asset materialize --partition-range` needs"
    )


class PublishSettings(_Strict):
    """Where the final preference set goes: always a local copy with a dataset card; the Hub when
    ``repo_id`` is set and the token variable holds a token."""

    repo_id: str | None = None
    private: bool = True
    token_env: EnvName = "HF_TOKEN"
    layout: Literal["dpo", "trl-conversational", "trl-standard"] = "trl-conversational"
    asset: Literal["dpo_pairs", "preference_pairs"] = "preference_pairs"
    license: str = Field("unknown", description="the card's license: a Hub license id (apache-2.0, cc-by-4.0, ...)")
    language: list[str] = Field(default_factory=lambda: ["en"], description="the card's languages (ISO 639-1)")


class DedupeSettings(_Strict):
    """Near-duplicate prompts across the whole source: a prompt whose word ``shingle_words``-grams are at least
    ``near_duplicate_threshold`` alike (Jaccard, estimated by MinHash over ``num_perm`` hashes) to an earlier kept
    prompt's is failed ``near_duplicate``. ``near_duplicates: false`` turns it off."""

    near_duplicates: bool = True
    near_duplicate_threshold: float = Field(0.85, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash hash functions (more: finer estimates)")
    shingle_words: int = Field(3, ge=1, le=16, description="words per shingle")


class BenchmarkSettings(_Strict):
    """A benchmark's prompts that training prompts must not overlap: files (JSONL, JSON, Parquet, CSV) or a Hub
    dataset, the text in ``columns``. A prompt sharing a run of ``ngram_words`` normalized words with one of them
    (and with at least ``min_overlap`` of its words inside such shared runs), or equal to one, is contaminated."""

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["files", "hub"] = "files"
    paths: list[str] = Field(default_factory=list)
    repo_id: str | None = None
    config: str | None = None
    split: str = "test"
    revision: str | None = None
    columns: list[str] = Field(default_factory=lambda: ["prompt"], min_length=1)
    ngram_words: int = Field(8, ge=2, le=64)
    min_overlap: float = Field(0.0, ge=0, le=1, description="share of the prompt's words in shared runs; 0: any run")
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_kind(self) -> BenchmarkSettings:
        if self.kind == "files" and not self.paths:
            raise ValueError(f"decontaminate {self.name!r}: kind 'files' needs paths")
        if self.kind == "hub" and not self.repo_id:
            raise ValueError(f"decontaminate {self.name!r}: kind 'hub' needs repo_id")
        return self


class CalibrationSettings(_Strict):
    """``judge_calibration``: the labelled pairs (prompt, better, worse) the judges are measured on (``path``, or the
    shipped set), and the accuracy below which its check warns."""

    path: str | None = None
    min_accuracy: float = Field(0.75, ge=0, le=1)
    limit: int | None = Field(None, ge=1, description="use only the first pairs of the set")


def _default_endpoints() -> list[EndpointSettings]:
    return [EndpointSettings(name=EMBEDDED, base_url=EMBEDDED, max_concurrency=2)]


def _default_generators() -> list[GeneratorSettings]:
    model = "smollm2-135m-instruct"
    return [
        GeneratorSettings(name="smollm2-focused", endpoint=EMBEDDED, model=model,
                          params={"temperature": 0.2, "top_p": 0.9, "max_tokens": 96, "seed": 7}),
        GeneratorSettings(name="smollm2-creative", endpoint=EMBEDDED, model=model,
                      params={"temperature": 1.0, "top_p": 0.95, "max_tokens": 96, "seed": 11}),
    ]  # fmt: skip


def _default_judge() -> JudgeSettings:
    return JudgeSettings(
        name="smollm2-judge",
        endpoint=EMBEDDED,
        model="smollm2-135m-instruct",
        params={"temperature": 0.0, "max_tokens": 384, "seed": 3},
    )


class Settings(_Strict):
    """The whole pipeline's configuration."""

    storage_dir: str = "pref_data"
    batch_size: int = Field(8, ge=1)
    source: SourceSettings = Field(default_factory=SourceSettings)
    endpoints: list[EndpointSettings] = Field(default_factory=_default_endpoints)
    generators: list[GeneratorSettings] = Field(default_factory=_default_generators)
    judge: JudgeSettings = Field(default_factory=_default_judge)
    judges: list[JudgeSettings] | None = Field(
        None, min_length=1, description="a panel of judges, each rating every answer (instead of judge)"
    )
    min_judges: int = Field(1, ge=1, description="a row fails when fewer panel judges than this could rate it")
    principles: list[str | PrincipleSettings] = Field(
        default_factory=list, description="system prompts drawn per prompt, generator and candidate"
    )
    pairs: PairSettings = Field(default_factory=PairSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    backfill: BackfillSettings = Field(default_factory=BackfillSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    budget_usd_per_step: float | None = Field(
        None, gt=0, description="per LLM step of a batch (generations, ratings): stop new requests past this spend"
    )
    max_failure_rate: float = Field(0.5, ge=0, le=1, description="a stage failing more rows than this stops")
    private_files: bool = Field(
        True, description="stage files, the request cache and the published copy are 0600 in 0700 folders"
    )
    argilla: ArgillaSettings = Field(default_factory=ArgillaSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    dedupe: DedupeSettings = Field(default_factory=DedupeSettings)
    decontaminate: list[BenchmarkSettings] = Field(default_factory=list)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    owners: list[str] = Field(
        default_factory=lambda: ["team:pref-assets"], description="every asset's owners: e-mail addresses or team:NAME"
    )

    @field_validator("generators", mode="before")
    @classmethod
    def _as_generators(cls, value: Any) -> Any:
        """Read a plain ``ModelSettings`` as a generator with the defaults (one answer, no system prompt)."""
        if not isinstance(value, list):
            return value
        return [v.model_dump() if type(v) is ModelSettings else v for v in value]

    @model_validator(mode="before")
    @classmethod
    def _judge_of_panel(cls, data: Any) -> Any:
        """``judges`` and ``judge`` are two spellings of the panel: give one. With ``judges``, ``judge`` is the
        panel's first judge (where one judge is named, e.g. as the review suggestions' agent)."""
        if isinstance(data, dict) and data.get("judges"):
            if data.get("judge") is not None:
                raise ValueError("give either judge (one judge) or judges (a panel), not both")
            return {**data, "judge": data["judges"][0]}
        return data

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        names = [e.name for e in self.endpoints]
        _require_unique(names, "endpoint")
        _require_unique([g.name for g in self.generators], "generator")
        _require_unique([j.name for j in self.panel], "judge")
        _require_unique([p.name for p in self.principle_list], "principle")
        if self.min_judges > len(self.panel):
            raise ValueError(f"min_judges is {self.min_judges}, but the panel has {len(self.panel)} judge(s)")
        if len(self.generators) < 2:
            raise ValueError("configure at least two generators: a pair needs two answers")
        if self.judge.endpoint not in names and "judge" not in self.model_fields_set:
            raise ValueError(
                f"judge: not configured, and the default judge runs on the {self.judge.endpoint!r} endpoint, which "
                f"endpoints does not list (known: {names}); add a judge section naming one of them"
            )
        fields = [(f"generators.{i}.endpoint", g) for i, g in enumerate(self.generators)]
        judges = [(f"judges.{i}.endpoint", j) for i, j in enumerate(self.judges)] if self.judges else []
        for field, model in [*fields, *(judges or [("judge.endpoint", self.judge)])]:
            if model.endpoint not in names:
                raise ValueError(
                    f"{field}: model {model.name!r} names unknown endpoint {model.endpoint!r}; known: {names}"
                )
        return self

    def prices(self) -> dict[tuple[str, str], tuple[float, float]]:
        """Return USD per million (input, output) tokens per (endpoint, API model)."""
        return {
            (m.endpoint, m.model): (m.price_input_per_million, m.price_output_per_million)
            for m in [*self.generators, *self.panel]
        }

    @property
    def panel(self) -> list[JudgeSettings]:
        """Return the judges that rate every answer: ``judges``, or ``judge`` as a panel of one."""
        return list(self.judges) if self.judges else [self.judge]

    @property
    def candidates_per_prompt(self) -> int:
        """Return how many answers each prompt gets: every generator's ``num_generations``, summed."""
        return sum(g.num_generations for g in self.generators)

    @property
    def principle_list(self) -> list[PrincipleSettings]:
        """Return the configured principles, a bare name read as the built-in principle of that name."""
        return [PrincipleSettings(name=p) if isinstance(p, str) else p for p in self.principles]

    def principle_texts(self) -> dict[str, str]:
        """Return each configured principle's name and text, in the configured order."""
        return {p.name: p.text or builtin_text(p.name) for p in self.principle_list}

    def cache_path(self) -> str | None:
        """Return the request cache file, or None when the cache is off."""
        if not self.cache.enabled:
            return None
        return self.cache.path or str(Path(self.storage_dir) / "cache" / "requests.sqlite")

    def endpoint(self, name: str) -> EndpointSettings:
        """Return the endpoint called ``name``."""
        return next(e for e in self.endpoints if e.name == name)

    def limits_dir(self) -> str:
        """Return the folder of the endpoints' shared limits (backend ``local``)."""
        return str(Path(self.storage_dir) / "limits")


def _require_unique(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {dupes}")


class SettingsError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Return settings from ``path``, ``$PREF_ASSETS_CONFIG``, ./pref_assets.yaml, or the defaults.

    A file named by ``path`` or ``$PREF_ASSETS_CONFIG`` that is empty is an error (not the defaults), and so is a
    ``storage_dir`` that is a file or cannot be written: these are found here, when the code location loads.
    """
    explicit = path or os.environ.get(CONFIG_ENV)
    chosen = explicit or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else None)
    if not chosen:
        return _checked_storage(Settings(), "the embedded default configuration")
    return _checked_storage(_read_settings(Path(chosen), explicit=bool(explicit)), str(chosen))


def _checked_storage(settings: Settings, where: str) -> Settings:
    problem = _storage_problem(Path(settings.storage_dir).absolute())
    if problem:
        raise SettingsError(f"{where}: invalid configuration:\n  storage_dir: {problem}")
    return settings


def _storage_problem(folder: Path) -> str | None:
    """Return why the pipeline could not write under ``folder`` (created when missing), or None."""
    if folder.exists() and not folder.is_dir():
        return "is an existing file, not a folder"
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return "cannot be created: part of its path is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return "is not writable" if existing == folder else "cannot be created: its parent folder is not writable"
    return None


def _read_settings(path: Path, *, explicit: bool = True) -> Settings:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SettingsError(f"{path}: cannot read configuration: {err}") from err
    if document is None and explicit:
        raise SettingsError(
            f"{path}: the configuration file is empty; write the settings in it, or unset {CONFIG_ENV} to run "
            "the embedded defaults"
        )
    try:
        return Settings.model_validate(document or {})
    except ValidationError as err:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
        # pydantic's own text repeats the input values, which may hold a credential; the messages name the fields
        raise SettingsError(f"{path}: invalid configuration:\n{problems}") from None
