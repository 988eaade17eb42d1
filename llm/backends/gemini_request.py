"""Gemini request translation: OpenAI-format messages, tools and settings -> `generateContent`'s contents and config.

API reference: https://ai.google.dev/api/generate-content (the adapter's I/O is in `llm.backends.gemini`).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from llm.backends.sdk.conventions import refuse_params
from llm.base import parse_tool_arguments
from llm.errors import LLMValidationError

__all__ = ["invalid_field", "to_gemini_contents", "to_gemini_sampling", "to_gemini_tool_config", "to_gemini_tools"]

#: Our tool_choice strings -> Gemini `functionCallingConfig.mode`.
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}
#: `extra_params` keys passed to `GenerateContentConfig` under the same name.
PASSTHROUGH_PARAMS = ("top_p", "top_k", "seed", "frequency_penalty", "presence_penalty")
#: Extras request validation accepts that Gemini has no equivalent for (`refuse_params`).
NO_EQUIVALENT_PARAMS = ("user",)


def invalid_field(where: str, message: str) -> LLMValidationError:
    """The error for a request field Gemini cannot take (named in the message and in `field`)."""
    return LLMValidationError(f"{where}: {message}", field=where)


def to_gemini_sampling(effective: Mapping[str, Any]) -> dict[str, Any]:
    """The call's settings -> `GenerateContentConfig` fields (sampling, stop sequences, JSON output)."""
    refuse_params(effective, NO_EQUIVALENT_PARAMS, "Gemini")
    config = {key: effective[key] for key in PASSTHROUGH_PARAMS if key in effective}
    stop = effective.get("stop")
    if stop is not None:
        config["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if "response_format" in effective:
        config.update(_response_format(effective["response_format"]))
    return config


def _response_format(value: Any) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, Mapping) else None
    schema = value.get("json_schema", {}).get("schema") if kind == "json_schema" else None
    if kind == "text":
        return {}
    if kind == "json_object" or isinstance(schema, Mapping):
        return {"response_mime_type": "application/json", **({"response_json_schema": schema} if schema else {})}
    raise invalid_field("extra_params.response_format",
                        "expected type 'text', 'json_object' or 'json_schema' (+ schema)")


def to_gemini_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools -> one Gemini Tool holding every function declaration (JSON schemas passed unchanged),
    in the REST API's camelCase (`functionDeclarations`, `parametersJsonSchema`)."""
    fields = {"name": "name", "description": "description", "parameters": "parametersJsonSchema"}
    declarations = [{gemini: tool["function"][ours] for ours, gemini in fields.items() if tool["function"].get(ours)}
                    for tool in tools]
    return [{"functionDeclarations": declarations}]


def to_gemini_tool_config(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    """Our tool_choice -> Gemini `toolConfig`: AUTO / ANY / NONE, or ANY restricted to one named function."""
    if isinstance(choice, str):
        return {"function_calling_config": {"mode": TOOL_CHOICE_MODES[choice]}}
    return {"function_calling_config": {"mode": "ANY", "allowed_function_names": [choice["function"]["name"]]}}


def to_gemini_contents(
    messages: list[dict[str, Any]], system_prompt: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI-format messages -> (system instruction, Gemini contents).

    System text is `system_prompt` then every system message, joined by blank lines. Assistant turns become "model"
    contents (text and `function_call` parts); consecutive `role: "tool"` messages become one "user" content of
    `function_response` parts, each named after the earlier call with the same id. Raises `LLMValidationError` for a
    tool result without an earlier call, an image in a system message, a bad data URL.
    """
    system = [system_prompt] if system_prompt else []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    results: list[dict[str, Any]] | None = None  # the parts of the tool-results content being built
    for i, message in enumerate(messages):
        role, where = message["role"], f"messages[{i}]"
        if role == "tool":
            if results is None:
                results = []
                contents.append({"role": "user", "parts": results})
            results.append(_function_response_part(message, call_names, where))
            continue
        results = None
        parts = _content_parts(message.get("content"), f"{where}.content")
        if role == "system":
            if any("text" not in part for part in parts):
                raise invalid_field(f"{where}.content", "system messages accept text parts only")
            system += ["\n".join(part["text"] for part in parts)] if parts else []
        elif role == "assistant":
            parts += _function_call_parts(message.get("tool_calls") or [], call_names, where)
            if parts:
                contents.append({"role": "model", "parts": parts})
        else:
            contents.append({"role": "user", "parts": parts})
    return ("\n\n".join(system) or None), contents


def _content_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    return [{"text": part["text"]} if part["type"] == "text" else _image_part(part["image_url"]["url"], f"{where}[{j}]")
            for j, part in enumerate(content or [])]


def _image_part(url: str, where: str) -> dict[str, Any]:
    """A data: URL -> `inline_data` (bytes); any other URL -> `file_data` with a MIME type guessed from its path."""
    if not url.startswith("data:"):
        mime = mimetypes.guess_type(urlparse(url).path)[0] or "image/jpeg"
        return {"file_data": {"file_uri": url, "mime_type": mime}}
    header, _, payload = url[len("data:"):].partition(",")
    mime, _, encoding = header.partition(";")
    if encoding != "base64" or not mime:
        raise invalid_field(where, "data URLs must be 'data:<mime>;base64,<data>'")
    return {"inline_data": {"mime_type": mime, "data": _base64_bytes(payload, where)}}


def _base64_bytes(text: Any, where: str) -> bytes:  # standard or URL-safe alphabet
    try:
        return base64.b64decode(str(text).replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_field(where, "not valid base64") from None


def _function_call_parts(calls: list[Any], call_names: dict[str, str], where: str) -> list[dict[str, Any]]:
    parts = []
    for call in calls:
        function = call["function"]
        call_names[call["id"]] = function["name"]
        args = parse_tool_arguments(function.get("arguments"))
        part: dict[str, Any] = {"function_call": {"id": call["id"], "name": function["name"], "args": args}}
        # Gemini 3 wants its thought signature back on the call: the caller copies it from
        # `response.metadata["thought_signatures"][id]` into the tool call dict as "thought_signature".
        if call.get("thought_signature"):
            part["thought_signature"] = _base64_bytes(call["thought_signature"], f"{where}.tool_calls")
        parts.append(part)
    return parts


def _function_response_part(message: Mapping[str, Any], call_names: dict[str, str], where: str) -> dict[str, Any]:
    call_id = message["tool_call_id"]
    name = call_names.get(call_id) or message.get("name")
    if not name:
        raise invalid_field(f"{where}.tool_call_id", f"no earlier assistant tool call has id {call_id!r} (Gemini needs "
                                                 "the function's name)")
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    response = value if isinstance(value, dict) else {"result": text}  # Gemini wants an object
    return {"function_response": {"id": call_id, "name": name, "response": response}}
