"""Backend names: `LLMBackendType`, the aliases users write (`anthropic`, `google`) and `provider:model` references.

Every layer resolves a backend name through `canonical_backend`, so each accepts the same spellings (README,
"Backends").
"""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = [
    "BACKEND_ALIASES",
    "KNOWN_BACKENDS",
    "LLMBackendType",
    "canonical_backend",
    "describe_known",
    "is_known",
    "split_model_ref",
]


class LLMBackendType(StrEnum):
    """The backends scout-llm knows. Compares equal to its string value: `LLMBackendType.OPENAI == "openai"`."""

    OLLAMA = "ollama"
    OPENAI = "openai"
    CLAUDE = "claude"
    GEMINI = "gemini"
    DEEPSEEK = "deepseek"
    LOCAL = "local"


#: The other names users know a backend by (the vendor's name, its SDK's and extra's name) -> our name.
BACKEND_ALIASES: dict[str, str] = {"anthropic": "claude", "google": "gemini"}
#: Our backend names, in `LLMBackendType` order.
KNOWN_BACKENDS: tuple[str, ...] = tuple(member.value for member in LLMBackendType)


def canonical_backend(name: str | Enum) -> str:
    """Our name for a backend name or alias: `"Anthropic"` -> `"claude"`; an unknown name comes back lowercased."""
    lowered = str(name.value if isinstance(name, Enum) else name).strip().lower()
    return BACKEND_ALIASES.get(lowered, lowered)


def is_known(name: str | Enum) -> bool:
    """Whether `name` (or its alias) is a backend scout-llm has."""
    return canonical_backend(name) in KNOWN_BACKENDS


def split_model_ref(ref: str) -> tuple[str | None, str]:
    """`provider:model` -> (backend, model); a string whose prefix names no backend is a plain model name.

    Only the first colon splits, so that model names with colons (Ollama's `qwen3:8b`) survive.
    """
    provider, sep, model = ref.partition(":")
    if sep and model and is_known(provider):
        return canonical_backend(provider), model
    return None, ref


def describe_known() -> str:
    """The known names with their aliases, for messages: `openai, claude (anthropic), gemini (google), ...`."""
    aliases: dict[str, list[str]] = {}
    for alias, name in BACKEND_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return ", ".join(f"{name} ({', '.join(aliases[name])})" if name in aliases else name for name in KNOWN_BACKENDS)
