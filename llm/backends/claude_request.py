"""Anthropic request translation: OpenAI-format messages, tools and settings -> the Messages API's request body.

API reference: https://docs.anthropic.com/en/api/messages (the adapter's I/O is in `llm.backends.claude`). System
messages go to the top-level `system` field; assistant `tool_calls` become `tool_use` blocks and consecutive
`role: "tool"` messages one user message of `tool_result` blocks; `image_url` parts become image blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llm.backends.sdk.conventions import refuse_params
from llm.base import parse_tool_arguments
from llm.errors import LLMValidationError

__all__ = ["to_anthropic_messages", "to_anthropic_output_format", "to_anthropic_sampling", "to_anthropic_tool_choice",
           "to_anthropic_tools"]

#: Sampling extras sent under the same name.
SAMPLING_PARAMS = ("top_p", "top_k")
#: Extras request validation accepts that the Messages API has no equivalent for (`refuse_params`).
NO_EQUIVALENT_PARAMS = ("seed", "frequency_penalty", "presence_penalty")

#: Our tool_choice strings -> Anthropic's (`{"type": "tool", "name": ...}` is built for a function choice).
TOOL_CHOICES: dict[str, dict[str, str]] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
    "any": {"type": "any"},
}

#: Image types the Messages API accepts in a base64 source.
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _invalid(message: str, field: str) -> LLMValidationError:
    return LLMValidationError(f"{field}: {message}", field=field)


def to_anthropic_image(url: str, where: str) -> dict[str, Any]:
    """An `image_url` URL -> an Anthropic image block: `data:` URLs as base64 sources, http(s) URLs as url sources."""
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, _, data = url.partition(",")
    media_type = header.removeprefix("data:").removesuffix(";base64")
    if not url.startswith("data:") or not header.endswith(";base64") or not data:
        raise _invalid("image URL must be http(s) or a base64 data: URL", where)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise _invalid(f"image type {media_type!r} not accepted; use one of {sorted(IMAGE_MEDIA_TYPES)}", where)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _to_blocks(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Message content -> Anthropic content: a string stays a string, parts become text and image blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part["type"] == "text":
            blocks.append({"type": "text", "text": part["text"]})
        else:
            blocks.append(to_anthropic_image(part["image_url"]["url"], f"{where}[{j}]"))
    return blocks


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n\n".join(part["text"] for part in content if part.get("type") == "text")
    return content or ""


def _assistant_content(message: Mapping[str, Any], where: str) -> str | list[dict[str, Any]]:
    """Assistant content; with `tool_calls`, its text (if any) then one `tool_use` block per call."""
    content = _to_blocks(message.get("content"), where)
    calls = message.get("tool_calls") or []
    if not calls:
        return content
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) and content else []
    blocks += content if isinstance(content, list) else []
    for call in calls:
        function = call["function"]
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                       "input": parse_tool_arguments(function.get("arguments"))})
    return blocks


def to_anthropic_messages(
    messages: Iterable[Mapping[str, Any]], system_prompt: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI-format messages -> (`system` text, Anthropic `messages`).

    `system_prompt` and then every system message are joined with blank lines, in order; consecutive `role: "tool"`
    results become one user message of `tool_result` blocks, as the API requires them right after the assistant's
    `tool_use` turn. Field names in errors index `messages` as given.

    Raises:
        LLMValidationError: for an image the API cannot take.
    """
    system: list[str] = [system_prompt or ""]
    converted: list[dict[str, Any]] = []
    tool_results: list[dict[str, Any]] | None = None
    for i, message in enumerate(messages):
        role, where = message["role"], f"messages[{i}].content"
        if role == "system":
            system.append(_text_of(message.get("content")))
            continue
        if role == "tool":
            if tool_results is None:
                tool_results = []
                converted.append({"role": "user", "content": tool_results})
            tool_results.append({"type": "tool_result", "tool_use_id": message["tool_call_id"],
                                 "content": _to_blocks(message.get("content"), where)})
            continue
        tool_results = None
        content = _assistant_content(message, where) if role == "assistant" else _to_blocks(message["content"], where)
        converted.append({"role": role, "content": content})
    text = "\n\n".join(part for part in system if part)
    return text or None, converted


def to_anthropic_tools(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools -> Anthropic tools (`parameters` becomes `input_schema`)."""
    converted = []
    for tool in tools:
        function = tool["function"]
        spec: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        converted.append(spec)
    return converted


def to_anthropic_tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    """Our tool_choice -> Anthropic's: auto, none, any ("required"/"any"), or one named tool."""
    if isinstance(choice, str):
        return dict(TOOL_CHOICES[choice])
    return {"type": "tool", "name": choice["function"]["name"]}


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) and s for s in sequences):
        raise _invalid("must be a string or a list of non-empty strings", "extra_params.stop")
    return list(sequences)


def to_anthropic_sampling(effective: Mapping[str, Any]) -> dict[str, Any]:
    """The request's extras as Messages API parameters; extras the API lacks raise instead of vanishing."""
    refuse_params(effective, NO_EQUIVALENT_PARAMS, "the Anthropic Messages API")
    top_k = effective.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise _invalid(f"must be a positive integer, got {top_k!r}", "extra_params.top_k")
    params: dict[str, Any] = {"temperature": effective["temperature"]}
    params.update({key: effective[key] for key in SAMPLING_PARAMS if key in effective})
    if "stop" in effective:
        params["stop_sequences"] = _stop_sequences(effective["stop"])
    if "user" in effective:
        params["metadata"] = {"user_id": str(effective["user"])}
    if effective.get("response_format") is not None:
        params["output_config"] = {"format": to_anthropic_output_format(effective["response_format"])}
    return params


def to_anthropic_output_format(response_format: Any) -> dict[str, Any]:
    """OpenAI `response_format` (json_schema) -> the Messages API's `output_config.format`, the schema passed through
    `anthropic.transform_schema` (the SDK's own fitting: closed objects, unsupported constraints moved into
    descriptions). https://platform.claude.com/docs/en/build-with-claude/structured-outputs"""
    from anthropic import transform_schema

    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if not isinstance(schema, Mapping):
        raise _invalid("Claude's structured output needs {'type': 'json_schema', 'json_schema': {'schema': {...}}}",
                       "extra_params.response_format")
    return {"type": "json_schema", "schema": transform_schema(dict(schema))}
