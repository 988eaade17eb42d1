"""Token usage in one shape for every vendor, what `LLMResponse.usage` holds: `USAGE_KEYS` always, `DETAIL_KEYS` only
when the vendor reported them; a count not reported stays absent, never a made-up zero. One normaliser per vendor
protocol, each linking the vendor's reference; the adapters call them for answers and streams alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "DETAIL_KEYS",
    "USAGE_KEYS",
    "anthropic_usage",
    "gemini_usage",
    "ollama_usage",
    "openai_usage",
    "usage_dict",
    "usage_for_backend",
]

#: The keys every usage carries when the vendor reported them, callers read these: `prompt_tokens` counts every input
#: token (cached ones included, what the vendor bills as input), `completion_tokens` every output token (reasoning
#: included), `total_tokens` their sum (or the vendor's own total).
USAGE_KEYS: Final = ("prompt_tokens", "completion_tokens", "total_tokens")
#: The detail keys, present only when the vendor reported them: input tokens read from the prompt cache, input tokens
#: written to it (Anthropic), output tokens spent on reasoning.
DETAIL_KEYS: Final = ("cached_tokens", "cache_creation_tokens", "reasoning_tokens")

#: Above this a "token count" is garbage, not a count (no context window comes near it).
MAX_TOKENS: Final = 10**12


def _read(obj: Any, *names: str) -> Any:
    """The first of `names` present on a JSON object (dict) or an SDK object (attribute); None when none is."""
    if obj is None:
        return None
    if isinstance(obj, str | bytes | int | float | list | tuple):  # a malformed answer: the adapter says so
        raise TypeError(f"usage is a {type(obj).__name__}, not an object")
    if isinstance(obj, Mapping):
        for name in names:
            value = obj.get(name)
            if value is not None:
                return value
        return None
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _count(value: Any) -> int | None:
    """A token count from outside, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_TOKENS else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _count(int(value))
    return None


def _build(prompt: int | None, completion: int | None, total: int | None, **details: int | None) -> dict[str, int]:
    usage: dict[str, int] = {}
    if prompt is not None:
        usage["prompt_tokens"] = prompt
    if completion is not None:
        usage["completion_tokens"] = completion
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if total is not None:
        usage["total_tokens"] = total
    for key, value in details.items():
        if value is not None:
            usage[key] = value
    return usage


def usage_dict(prompt_tokens: Any, completion_tokens: Any, total: Any = None) -> dict[str, int]:
    """Usage from counts alone: prompt, completion and total. `{}` when none is a count (usage unknown, never zeros);
    a count left out while the others were given counts as 0."""
    prompt, completion, given_total = _count(prompt_tokens), _count(completion_tokens), _count(total)
    if prompt is None and completion is None and given_total is None:
        return {}
    prompt, completion = prompt or 0, completion or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": given_total or prompt + completion}


def openai_usage(raw: Any) -> dict[str, int] | None:
    """Chat Completions `usage` (OpenAI, DeepSeek, llama.cpp and other OpenAI-compatible servers).

    `prompt_tokens` already includes `prompt_tokens_details.cached_tokens`; DeepSeek reports its cache hits as
    `prompt_cache_hit_tokens` instead.

    See https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage and
    https://api-docs.deepseek.com/api/create-chat-completion
    """
    if raw is None:
        return None
    prompt_details = _read(raw, "prompt_tokens_details")
    completion_details = _read(raw, "completion_tokens_details")
    cached = _count(_read(prompt_details, "cached_tokens"))
    if cached is None:
        cached = _count(_read(raw, "prompt_cache_hit_tokens"))
    return _build(
        _count(_read(raw, "prompt_tokens")),
        _count(_read(raw, "completion_tokens")),
        _count(_read(raw, "total_tokens")),
        cached_tokens=cached,
        cache_creation_tokens=_count(_read(prompt_details, "cache_write_tokens")),
        reasoning_tokens=_count(_read(completion_details, "reasoning_tokens")),
    )


def anthropic_usage(raw: Any, previous: Mapping[str, int] | None = None) -> dict[str, int] | None:
    """Messages `usage` (a message's, or a stream's `message_start` / `message_delta`).

    Anthropic's `input_tokens` excludes the cache: the prompt is `input_tokens + cache_read_input_tokens +
    cache_creation_input_tokens`. A `message_delta` carries the cumulative `output_tokens` and may omit the input
    counts; those then come from `previous` (the usage of `message_start`).

    See https://docs.anthropic.com/en/api/messages#response-usage
    """
    if raw is None:
        return None if previous is None else dict(previous)
    base = _count(_read(raw, "input_tokens"))
    read = _count(_read(raw, "cache_read_input_tokens"))
    written = _count(_read(raw, "cache_creation_input_tokens"))
    if base is None and previous is not None:
        prompt = previous.get("prompt_tokens")
        read = previous.get("cached_tokens") if read is None else read
        written = previous.get("cache_creation_tokens") if written is None else written
    else:
        prompt = None if base is None else base + (read or 0) + (written or 0)
    completion = _count(_read(raw, "output_tokens"))
    if completion is None and previous is not None:
        completion = previous.get("completion_tokens")
    return _build(prompt, completion, None, cached_tokens=read, cache_creation_tokens=written)


def gemini_usage(raw: Any) -> dict[str, int] | None:
    """`usageMetadata` (JSON, camelCase) or google-genai's `usage_metadata` (snake_case).

    Thinking tokens are billed as output, so they count as completion tokens and as `reasoning_tokens`.
    Gemini's JSON omits a zero count (proto3), so an absent prompt or candidates count in a usage block that exists
    is a real zero; an absent cached or thoughts count stays absent.

    See https://ai.google.dev/api/generate-content#UsageMetadata
    """
    if raw is None:
        return None
    prompt = _count(_read(raw, "promptTokenCount", "prompt_token_count"))
    candidates = _count(_read(raw, "candidatesTokenCount", "candidates_token_count"))
    thoughts = _count(_read(raw, "thoughtsTokenCount", "thoughts_token_count"))
    tool_prompt = _count(_read(raw, "toolUsePromptTokenCount", "tool_use_prompt_token_count"))
    total = _count(_read(raw, "totalTokenCount", "total_token_count"))
    if prompt is None and candidates is None and total is None:
        return None
    return _build(
        (prompt or 0) + (tool_prompt or 0),
        (candidates or 0) + (thoughts or 0),
        total,
        cached_tokens=_count(_read(raw, "cachedContentTokenCount", "cached_content_token_count")),
        reasoning_tokens=thoughts,
    )


def ollama_usage(raw: Any) -> dict[str, int] | None:
    """A final `/api/chat` object (or the ollama SDK's `ChatResponse`): `prompt_eval_count` and `eval_count`.

    Ollama reports neither cache nor reasoning counts. Older servers omit `prompt_eval_count` when the whole prompt
    came from their cache; the prompt count then stays absent.

    See https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
    """
    if raw is None:
        return None
    prompt = _count(_read(raw, "prompt_eval_count"))
    completion = _count(_read(raw, "eval_count"))
    if prompt is None and completion is None:
        return None
    return _build(prompt, completion, None)


_BY_BACKEND: Final = {
    "openai": openai_usage,
    "deepseek": openai_usage,
    "local": openai_usage,
    "claude": anthropic_usage,
    "gemini": gemini_usage,
    "ollama": ollama_usage,
}


def usage_for_backend(backend: str, raw: Any) -> dict[str, int] | None:
    """The usage normaliser of a backend (by its registry name), applied to `raw`; None for an unknown backend."""
    convert = _BY_BACKEND.get(backend)
    return convert(raw) if convert is not None else None
