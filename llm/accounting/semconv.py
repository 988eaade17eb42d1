"""The OpenTelemetry GenAI semantic conventions as scout-llm records them: provider names, metric buckets, and the
span and metric attributes of a call, its request, its answer and (when captured) its content
(https://opentelemetry.io/docs/specs/semconv/gen-ai/)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "BACKEND_PROVIDER_NAMES",
    "DURATION_BUCKETS",
    "HOST_PROVIDER_NAMES",
    "TOKEN_BUCKETS",
    "USAGE_ATTRIBUTES",
    "MetricSets",
    "answered_sets",
    "call_attributes",
    "input_content",
    "output_content",
    "provider_name",
    "request_attributes",
    "response_attributes",
]

#: `gen_ai.provider.name` per backend (semconv well-known values where one exists).
BACKEND_PROVIDER_NAMES: Final[Mapping[str, str]] = {
    "openai": "openai", "claude": "anthropic", "gemini": "gcp.gemini", "deepseek": "deepseek",
    "ollama": "ollama", "local": "llama_cpp",
}
#: OpenAI-compatible hosts whose provider has its own well-known name (matched on the host's end).
HOST_PROVIDER_NAMES: Final = (
    ("openai.azure.com", "azure.ai.openai"), ("api.groq.com", "groq"), ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"), ("api.x.ai", "x_ai"), ("api.perplexity.ai", "perplexity"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"), ("api.anthropic.com", "anthropic"),
)
#: Bucket advice from the semantic conventions.
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: Usage counts -> their span attribute.
USAGE_ATTRIBUTES: Final = (
    ("prompt_tokens", "gen_ai.usage.input_tokens"),
    ("completion_tokens", "gen_ai.usage.output_tokens"),
    ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_creation_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
)


_USAGE_NAMES: Final = dict(USAGE_ATTRIBUTES)
_NUMBER: Final = (int, float)


@lru_cache(maxsize=64)
def _server(base_url: str | None) -> tuple[str | None, int | None]:
    if not base_url:
        return None, None
    try:
        parts = urlsplit(base_url)
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None, None


@lru_cache(maxsize=64)
def provider_name(backend: str, base_url: str | None = None) -> str:
    """`gen_ai.provider.name` for a backend: by the base URL's host when it names a known provider, else by backend."""
    host = _server(base_url)[0]
    if host:
        for suffix, name in HOST_PROVIDER_NAMES:
            if host == suffix or host.endswith("." + suffix):
                return name
    return BACKEND_PROVIDER_NAMES.get(backend, backend)


@lru_cache(maxsize=256)
def call_attributes(backend: str, base_url: str | None, model: str) -> tuple[str, Mapping[str, Any]]:
    """The span name and the attributes every call to one backend, endpoint and model shares (also the metric
    attributes until the answer names its model): built once, never changed."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name(backend, base_url),
                             "gen_ai.request.model": model}
    host, port = _server(base_url)
    if host:
        attrs["server.address"], attrs["server.port"] = host, port
    return f"chat {model}", attrs


#: The metric attribute sets of an answered call: (duration, input tokens, output tokens).
MetricSets = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]


@lru_cache(maxsize=256)
def answered_sets(base: tuple[str, str | None, str], served: str, response_model: str | None) -> MetricSets:
    """The metric attributes of a call to `base` (backend, base URL, model) answered by backend `served` with
    `response_model`: built once per combination and shared by every record (the SDK does not change them)."""
    attrs = dict(call_attributes(*base)[1])
    if served and served != base[0]:  # a fallback served: its provider, not the first backend's server
        attrs["gen_ai.provider.name"] = provider_name(served)
        attrs.pop("server.address", None)
        attrs.pop("server.port", None)
    if response_model:
        attrs["gen_ai.response.model"] = response_model
    return attrs, {**attrs, "gen_ai.token.type": "input"}, {**attrs, "gen_ai.token.type": "output"}


def request_attributes(attrs: dict[str, Any], request: Any) -> None:
    max_tokens = getattr(request, "max_tokens", None)
    if isinstance(max_tokens, int):
        attrs["gen_ai.request.max_tokens"] = max_tokens
    temperature = getattr(request, "temperature", None)
    if isinstance(temperature, _NUMBER):
        attrs["gen_ai.request.temperature"] = float(temperature)
    extra = getattr(request, "extra_params", None)
    top_p = extra.get("top_p") if extra else None
    if isinstance(top_p, _NUMBER):
        attrs["gen_ai.request.top_p"] = float(top_p)


def response_attributes(response: Any, usage: Mapping[str, Any], backend: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if backend:
        attrs["scout_llm.backend"] = backend
    if getattr(response, "model", None):
        attrs["gen_ai.response.model"] = response.model
    metadata = getattr(response, "metadata", None) or {}
    response_id = metadata.get("id") or metadata.get("response_id")
    if isinstance(response_id, str):
        attrs["gen_ai.response.id"] = response_id
    finish = getattr(response, "finish_reason", None)
    if finish:
        attrs["gen_ai.response.finish_reasons"] = (str(finish),)
    for key, value in usage.items():  # a few keys: cheaper than looking up each attribute's
        name = _USAGE_NAMES.get(key)
        if name is not None and isinstance(value, int):
            attrs[name] = value
    return attrs


def input_content(attrs: dict[str, Any], request: Any) -> None:
    system = getattr(request, "system_prompt", None)
    if system:
        attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])
    attrs["gen_ai.input.messages"] = json.dumps(getattr(request, "messages", None) or [], default=str)


def output_content(response: Any) -> str:
    message = {"role": "assistant", "content": getattr(response, "content", ""),
               "finish_reason": getattr(response, "finish_reason", None)}
    calls = getattr(response, "tool_calls", None)
    if calls:
        message["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    return json.dumps([message], default=str)
