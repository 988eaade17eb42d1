"""Chat format of the local backend: OpenAI-format messages and settings -> `Llama.create_chat_completion` arguments.

Library reference: https://llama-cpp-python.readthedocs.io/en/latest/api-reference/ (the I/O is in
`llm.backends.local`). A local text model takes text only: images, tool calls and tool results are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm.backends.sdk.conventions import normalise_finish_reason, refuse_params
from llm.base import FinishReason
from llm.errors import LLMValidationError

__all__ = ["map_finish_reason", "to_llama_messages", "to_llama_params", "to_llama_response_format"]

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
#: `extra_params` keys `create_chat_completion` takes under the same name.
PASSTHROUGH_PARAMS = ("top_p", "top_k", "stop", "seed", "frequency_penalty", "presence_penalty")
#: Extras request validation accepts that llama.cpp has no equivalent for (`refuse_params`).
NO_EQUIVALENT_PARAMS = ("user",)

def map_finish_reason(reason: str | None) -> FinishReason | None:
    """llama-cpp-python's finish reason -> ours (it uses OpenAI's words)."""
    return normalise_finish_reason(FINISH_REASONS, reason)


def to_llama_messages(messages: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, str]]:
    """Validated OpenAI-format messages -> llama's chat messages (role + text); `system_prompt` first.

    Text parts of a multi-part message are joined with newlines.

    Raises:
        LLMValidationError: for what a local text model cannot take: images, tool calls and tool results.
    """
    converted = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message["role"] == "tool" or message.get("tool_calls"):
            raise LLMValidationError(f"{where}: the local backend does not support tool calls", field=where)
        converted.append({"role": message["role"], "content": _text_of(message.get("content"), f"{where}.content")})
    return converted


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part["type"] != "text":
            field = f"{where}[{j}]"
            raise LLMValidationError(f"{field}: the local backend takes text only (no images)", field=field)
        texts.append(part["text"])
    return "\n".join(texts)


def to_llama_params(effective: Mapping[str, Any]) -> dict[str, Any]:
    """Sampling settings -> `create_chat_completion` keyword arguments.

    Raises:
        LLMValidationError: for a setting llama.cpp has no equivalent for, or an unknown `response_format`.
    """
    refuse_params(effective, NO_EQUIVALENT_PARAMS, "the local backend")
    params = {name: effective[name] for name in PASSTHROUGH_PARAMS if name in effective}
    params["temperature"] = effective["temperature"]
    params["max_tokens"] = effective["max_tokens"]
    response_format = to_llama_response_format(effective.get("response_format"))
    if response_format is not None:
        params["response_format"] = response_format
    return params


def to_llama_response_format(response_format: Any) -> dict[str, Any] | None:
    """OpenAI `response_format` -> llama's (a JSON grammar): `{"type": "json_object"[, "schema": {...}]}`."""
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if response_format is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if isinstance(schema, Mapping):
        return {"type": "json_object", "schema": dict(schema)}
    raise LLMValidationError(
        "extra_params.response_format: expected {'type': 'text' | 'json_object'} or "
        "{'type': 'json_schema', 'json_schema': {'schema': {...}}}",
        field="extra_params.response_format",
    )
