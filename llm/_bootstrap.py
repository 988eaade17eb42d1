"""`initialize_llm_backends`: register every backend the settings configure, without a single billed call.

A cloud backend is registered when its key is set; its `initialize()` only builds the SDK client. Ollama has no key,
so it is registered when `SCOUT_OLLAMA_ENABLED` says so, or, when that is unset, when its models listing
(`GET /api/tags`, through the backend's `health_check()`) answers within `OLLAMA_PROBE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm._health import maybe_await, quiet_cleanup
from llm.base import LLMBackend, LLMBackendType, LLMConfig
from llm.config import ScoutConfig
from llm.errors import LLMError

if TYPE_CHECKING:
    from llm.manager import LLMManager

__all__ = ["DEFAULT_PREFERENCE", "OLLAMA_PROBE_TIMEOUT", "SPECS", "BackendSpec", "register_configured_backends"]

logger = logging.getLogger("llm.manager")

#: The longest the Ollama reachability probe may take, in seconds.
OLLAMA_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class BackendSpec:
    """Where the settings keep one backend's key and URL, and which class serves it."""

    name: str
    class_name: str
    key_field: str | None
    url_field: str


#: Cloud backends, in registration order.
SPECS = (
    BackendSpec("openai", "OpenAIBackend", "openai_api_key", "openai_base_url"),
    BackendSpec("claude", "ClaudeBackend", "anthropic_api_key", "anthropic_base_url"),
    BackendSpec("gemini", "GeminiBackend", "gemini_api_key", "gemini_base_url"),
    BackendSpec("deepseek", "DeepSeekBackend", "deepseek_api_key", "deepseek_base_url"),
)
OLLAMA = BackendSpec("ollama", "OllamaBackend", None, "ollama_base_url")
#: Default backend when `SCOUT_LLM_DEFAULT_BACKEND` names none that registered.
DEFAULT_PREFERENCE = ("openai", "claude", "gemini", "deepseek", "ollama", "local")


def _key(spec: BackendSpec, config: ScoutConfig) -> str | None:
    secret = getattr(config.api, spec.key_field) if spec.key_field else None
    return secret.get_secret_value() or None if secret is not None else None


def backend_config(spec: BackendSpec, config: ScoutConfig) -> LLMConfig:
    """The `LLMConfig` of one backend, from the settings (model, URL, timeout and retry policy)."""
    return LLMConfig(
        backend_type=LLMBackendType(spec.name),
        model_name=config.llm.model_for(spec.name),
        api_key=_key(spec, config),  # LLMConfig keeps it as an APIKey
        base_url=getattr(config.api, spec.url_field),
        timeout=config.llm.timeout,
        retry_attempts=config.llm.retry_attempts,
        retry_delay=config.llm.retry_delay,
    )


def build_backend(spec: BackendSpec, config: ScoutConfig) -> LLMBackend | None:
    """The backend object, or None (logged) when its SDK or adapter is missing or its settings are wrong."""
    try:
        cls = getattr(importlib.import_module("llm.backends"), spec.class_name)
        backend: LLMBackend = cls(backend_config(spec, config))
    except (ImportError, AttributeError, LLMError, ValueError) as exc:
        logger.warning("%s backend not available: %s", spec.name, exc)
        return None
    return backend


async def _register(manager: LLMManager, backend: LLMBackend) -> bool:
    if await manager.register_backend(backend):
        return True
    await quiet_cleanup(backend)
    return False


async def _ollama_answers(backend: LLMBackend, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await maybe_await(backend.initialize())
            return bool(await maybe_await(backend.health_check()))
    except Exception as exc:  # unreachable, slow or broken: not registered
        logger.debug("Ollama probe failed: %s", type(exc).__name__)
        return False


async def _register_ollama(manager: LLMManager, config: ScoutConfig, probe_timeout: float) -> bool:
    enabled = config.llm.ollama_enabled
    if enabled is False or OLLAMA.name in manager.get_available_backends():
        return False
    backend = build_backend(OLLAMA, config)
    if backend is None:
        return False
    if enabled is None and not await _ollama_answers(backend, probe_timeout):
        logger.info("Ollama did not answer at %s within %gs; not registered", config.api.ollama_base_url,
                    probe_timeout)
        await quiet_cleanup(backend)
        return False
    return await _register(manager, backend)


async def _register_local(manager: LLMManager, config: ScoutConfig) -> bool:
    """The in-process model, last: the fallback behind every remote backend (`SCOUT_LOCAL_ENABLED` forces it on/off)."""
    if LLMBackendType.LOCAL.value in manager.get_available_backends():
        return False
    from llm.backends.local import local_backend_from_config

    backend = local_backend_from_config(config)
    return backend is not None and await _register(manager, backend)


def _choose_default(manager: LLMManager, config: ScoutConfig, registered: list[str]) -> None:
    names = manager.get_available_backends()
    wanted = config.llm.default_backend or config.llm_routing.default_backend
    if wanted and wanted in names:
        manager.set_default_backend(wanted)
        return
    if wanted:
        logger.warning("SCOUT_LLM_DEFAULT_BACKEND=%s is not registered; choosing another default", wanted)
    if not registered and manager.get_default_backend() is not None:
        return  # nothing new: keep the caller's choice
    for name in DEFAULT_PREFERENCE:
        if name in names:
            manager.set_default_backend(name)
            return


async def register_configured_backends(
    manager: LLMManager, config: ScoutConfig, *, probe_timeout: float = OLLAMA_PROBE_TIMEOUT
) -> list[str]:
    """Register what the settings configure and is not registered yet; returns the names registered now."""
    registered: list[str] = []
    for spec in SPECS:
        if spec.name in manager.get_available_backends() or not _key(spec, config):
            continue
        backend = build_backend(spec, config)
        if backend is not None and await _register(manager, backend):
            registered.append(spec.name)
    if await _register_ollama(manager, config, probe_timeout):
        registered.append(OLLAMA.name)
    if await _register_local(manager, config):
        registered.append(LLMBackendType.LOCAL.value)
    _choose_default(manager, config, registered)
    names = manager.get_available_backends()
    if names:
        logger.info("LLM backends: %s (default: %s)", ", ".join(names), manager.get_default_backend())
    else:
        logger.warning("No LLM backends were successfully initialized")
    return registered
