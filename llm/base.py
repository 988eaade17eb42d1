"""Shared value types (the backend base class is in `llm.backend`, re-exported here).

The types keep the field names, order and defaults of the original ScoutAgent `llm/` layer (see README, "ScoutAgent
compatibility"), so existing callers run unchanged: `LLMRequest(messages=[...], temperature=0.7, max_tokens=200)`,
`response.content`, `response.usage["total_tokens"]`, `extra_params["model_name_override"]`.

They are plain dataclasses on purpose: they are built on every call, and validation runs once, explicitly, in
`validate_request` before any network call, instead of on every attribute access.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeAlias

from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMBackendError,
    LLMBadRequestError,
    LLMConfigError,
    LLMConnectionError,
    LLMContentFilterError,
    LLMContextLengthError,
    LLMError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)

__all__ = [
    "APIKey",
    "FinishReason",
    "LLMAllBackendsFailedError",
    "LLMAuthenticationError",
    "LLMBackendError",
    "LLMBackendType",
    "LLMBadRequestError",
    "LLMConfig",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMContentFilterError",
    "LLMContextLengthError",
    "LLMError",
    "LLMNotFoundError",
    "LLMQuotaExceededError",
    "LLMRateLimitError",
    "LLMRequest",
    "LLMResponse",
    "LLMServerError",
    "LLMStreamError",
    "LLMTimeoutError",
    "LLMValidationError",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ResponseDone",
    "validate_request",
]


class LLMBackendType(StrEnum):
    """The backends scout-llm knows. Compares equal to its string value: `LLMBackendType.OPENAI == "openai"`."""

    OLLAMA = "ollama"
    OPENAI = "openai"
    CLAUDE = "claude"
    GEMINI = "gemini"
    DEEPSEEK = "deepseek"
    LOCAL = "local"



FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class APIKey(str):
    """An API key: a `str` that hides itself when printed.

    It compares, hashes and behaves like its plain value (`key == "sk-..."`, `"sk" in key`, `bool(key)`, `+`,
    `.encode()`), and f-strings / `format()` give the value, which is how SDK clients build their auth headers, so it
    can be handed to any code that takes the key as a `str`. What people print shows `**********` instead: `repr()`,
    `str()`, `print()`, `%s` formatting (logging) and every container's repr. `get_secret_value()` returns the key as a
    plain `str`, as pydantic's `SecretStr` does.
    """

    __slots__ = ()

    MASK: ClassVar[str] = "**********"

    def __repr__(self) -> str:
        return f"APIKey({self.MASK!r})"

    def __str__(self) -> str:
        return self.MASK

    def __format__(self, format_spec: str) -> str:
        return format(self.get_secret_value(), format_spec)

    def get_secret_value(self) -> str:
        """The key as a plain `str`."""
        return str.__str__(self)


def _as_api_key(value: object) -> APIKey:
    """A key given as a `str`, an `APIKey` or a pydantic `SecretStr` (anything with `get_secret_value()`)."""
    if isinstance(value, APIKey):
        return value
    reveal = getattr(value, "get_secret_value", None)
    if reveal is not None and not isinstance(value, str):
        value = reveal()
    if not isinstance(value, str):
        raise LLMConfigError(f"api_key must be a string, got {type(value).__name__}")
    return APIKey(value)


@dataclass
class LLMConfig:
    """How to reach one backend.

    `api_key` may be given as a `str` or a pydantic `SecretStr`; it is kept as an `APIKey`, which equals its plain
    string (`config.api_key == "test-key"`) but never shows in `repr()`, `str()` or logs.
    """

    backend_type: LLMBackendType
    model_name: str
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    temperature: float = 0.7
    max_tokens: int = 4096
    timeout: float = 60
    retry_attempts: int = 3
    retry_delay: float = 1.0
    extra_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.backend_type, str) and not isinstance(self.backend_type, LLMBackendType):
            try:
                self.backend_type = LLMBackendType(self.backend_type.lower())
            except ValueError:
                raise LLMConfigError(
                    f"Unknown backend_type {self.backend_type!r}; expected one of "
                    f"{', '.join(b.value for b in LLMBackendType)}"
                ) from None
        if not self.timeout or self.timeout <= 0:
            raise LLMConfigError(f"timeout must be > 0 seconds, got {self.timeout!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # Every assignment, the constructor's included: a key set later is wrapped too, so it never shows in clear.
        if name == "api_key" and value is not None:
            value = _as_api_key(value)
        object.__setattr__(self, name, value)

    def secret(self) -> str | None:
        """The API key in clear text (a plain `str`), for handing to an SDK client; None when unset or empty."""
        key = self.api_key
        return key.get_secret_value() or None if isinstance(key, APIKey) else key or None


@dataclass
class LLMRequest:
    """One chat request: OpenAI-style message dicts plus sampling settings.

    `extra_params` takes `model_name_override` and the sampling extras in `SAMPLING_PARAMS`; anything else is rejected
    by validation instead of silently reaching an SDK.
    """

    messages: list[dict[str, Any]]
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCall:
    """A tool call the model asked for. `arguments` is the parsed JSON object; `raw_arguments` the text as sent."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""

    def to_message_part(self) -> dict[str, Any]:
        """The OpenAI-format entry for an assistant message's `tool_calls`, to send the call back in history."""
        import json  # json and logging are imported where used: they are a fifth of `import llm`
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments or json.dumps(self.arguments)},
        }


@dataclass
class LLMResponse:
    """One answer. A response that exists succeeded: failures raise an `LLMError` instead."""

    content: str
    model: str
    backend_type: str
    usage: dict[str, Any]
    metadata: dict[str, Any]
    success: bool = True
    error: str | None = None
    response_time: float = 0.0
    raw_response: Any | None = field(default=None, repr=False)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None

    def to_assistant_message(self) -> dict[str, Any]:
        """This answer as an assistant message, ready to append to the history of a follow-up request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [call.to_message_part() for call in self.tool_calls]
        return message


class DeferredRaw:
    """A vendor answer kept as its JSON until `LLMResponse.raw_response` is first read, then built into the SDK's
    typed object by `build(data)`: callers who never look at it never pay for the SDK's model construction."""

    __slots__ = ("build", "data")

    def __init__(self, build: Callable[[Any], Any], data: Any) -> None:
        self.build = build
        self.data = data


class _RawResponseField:
    """`LLMResponse.raw_response`: stored as given; a `DeferredRaw` is built on first read and the result kept."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None
        value = obj.__dict__.get("_raw_response")
        if isinstance(value, DeferredRaw):
            value = obj.__dict__["_raw_response"] = value.build(value.data)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["_raw_response"] = value


# After the dataclass is made, so that its field (default None, compared and copied like any other) reads through it.
setattr(LLMResponse, "raw_response", _RawResponseField())  # noqa: B010


# ---------------------------------------------------------------------------------------------------------------------
# Stream events: the typed stream (`LLMBackend.stream`) yields these; `stream_generate` keeps only the text.


@dataclass(slots=True)
class TextDelta:
    """A piece of answer text."""

    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call: `id` and `name` arrive first, `arguments` in JSON text fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ResponseDone:
    """The last event of every stream: the whole answer, with usage, tool calls and the finish reason."""

    response: LLMResponse


StreamEvent: TypeAlias = TextDelta | ToolCallDelta | ResponseDone


# ---------------------------------------------------------------------------------------------------------------------
# Validation: one pass before any network call.

ROLES = frozenset({"system", "user", "assistant", "tool"})
CONTENT_PART_TYPES = frozenset({"text", "image_url"})
SAMPLING_PARAMS = frozenset(
    {"top_p", "top_k", "stop", "seed", "frequency_penalty", "presence_penalty", "response_format", "user"}
)
EXTRA_PARAM_KEYS = SAMPLING_PARAMS | {"model_name_override"}
TOOL_CHOICES = frozenset({"auto", "none", "required", "any"})


def _fail(message: str, field_name: str) -> LLMValidationError:
    return LLMValidationError(f"{field_name}: {message}", field=field_name)


def _check_text(value: str, field_name: str) -> None:
    # Lone surrogates are what invalid UTF-8 becomes after a lenient decode; no vendor accepts them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("contains invalid UTF-8 (lone surrogate code points)", field_name) from None


def _check_content(content: Any, role: str, where: str) -> None:
    if isinstance(content, str):
        _check_text(content, where)
        return
    if content is None and role in ("assistant", "tool"):
        return
    if not isinstance(content, list):
        raise _fail(f"content must be a string or a list of content parts, got {type(content).__name__}", where)
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        if not isinstance(part, Mapping) or part.get("type") not in CONTENT_PART_TYPES:
            raise _fail(f"content part must be a dict with type in {sorted(CONTENT_PART_TYPES)}", part_where)
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _fail("text part needs a string 'text'", part_where)
            _check_text(part["text"], part_where)
        elif not isinstance(part.get("image_url"), Mapping) or not isinstance(part["image_url"].get("url"), str):
            raise _fail("image_url part needs {'image_url': {'url': str}}", part_where)


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise _fail(f"must be a dict, got {type(message).__name__}", where)
    role = message.get("role")
    if role not in ROLES:
        raise _fail(f"unknown role {role!r}; expected one of {sorted(ROLES)}", f"{where}.role")
    if "content" not in message and not message.get("tool_calls"):
        raise _fail("missing 'content'", f"{where}.content")
    _check_content(message.get("content"), role, f"{where}.content")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _fail("a tool result needs 'tool_call_id'", f"{where}.tool_call_id")
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or "id" not in call:
            raise _fail("needs {'id', 'function': {'name', 'arguments'}}", f"{where}.tool_calls[{j}]")


def _check_tools(tools: Any, tool_choice: Any) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("must be a list of OpenAI-format function tools", "tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if tool.get("type", "function") != "function" or not isinstance(function, Mapping):
                raise _fail("must be {'type': 'function', 'function': {...}}", f"tools[{i}]")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise _fail("function needs a 'name'", f"tools[{i}].function.name")
    if tool_choice is None:
        return
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise _fail(f"must be one of {sorted(TOOL_CHOICES)} or a function choice dict", "tool_choice")
    elif not (isinstance(tool_choice, Mapping) and isinstance(tool_choice.get("function", {}).get("name"), str)):
        raise _fail("a dict tool_choice must be {'type': 'function', 'function': {'name': ...}}", "tool_choice")
    if not tools and tool_choice not in ("none", "auto"):
        raise _fail("is set but no tools were given", "tool_choice")


def _check_number(value: Any, field_name: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
        raise _fail(f"must be a number in [{low:g}, {high:g}], got {value!r}", field_name)


def validate_request(request: LLMRequest, temperature_range: tuple[float, float] = (0.0, 2.0)) -> None:
    """Check a request before any network call.

    Raises:
        LLMValidationError: naming the first offending field.
    """
    if not isinstance(request.messages, list) or not request.messages:
        raise _fail("must be a non-empty list of message dicts", "messages")
    for i, message in enumerate(request.messages):
        _check_message(i, message)
    if request.system_prompt is not None:
        if not isinstance(request.system_prompt, str):
            raise _fail("must be a string", "system_prompt")
        _check_text(request.system_prompt, "system_prompt")
    if request.temperature is not None:
        _check_number(request.temperature, "temperature", *temperature_range)
    if request.max_tokens is not None and (
        isinstance(request.max_tokens, bool) or not isinstance(request.max_tokens, int) or request.max_tokens <= 0
    ):
        raise _fail(f"must be a positive integer, got {request.max_tokens!r}", "max_tokens")
    _check_tools(request.tools, request.tool_choice)
    _check_extra_params(request.extra_params, "extra_params")


def _check_extra_params(extra: Any, where: str) -> None:
    if not isinstance(extra, Mapping):
        raise _fail("must be a dict", where)
    unknown = set(extra) - EXTRA_PARAM_KEYS
    if unknown:
        raise _fail(f"unknown key(s) {sorted(unknown)}; supported: {sorted(EXTRA_PARAM_KEYS)}", where)
    if "top_p" in extra:
        _check_number(extra["top_p"], f"{where}.top_p", 0.0, 1.0)
    override = extra.get("model_name_override")
    if override is not None and (not isinstance(override, str) or not override):
        raise _fail("must be a non-empty string", f"{where}.model_name_override")


# ---------------------------------------------------------------------------------------------------------------------


# The backend base class lives in llm/backend.py; `from llm.base import LLMBackend` still works. It is loaded on first
# use (importlib, like `llm.backends`), so that these types never depend on the backend layer.
_MOVED = {"LLMBackend": "llm.backend"}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'llm.base' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def usage_dict(prompt_tokens: int | None, completion_tokens: int | None, total: int | None = None) -> dict[str, int]:
    """Usage in the shape every response carries: prompt, completion and total token counts."""
    prompt = int(prompt_tokens or 0)
    completion = int(completion_tokens or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": int(total or prompt + completion)}


def parse_tool_arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Tool-call arguments as a dict, from JSON text (OpenAI, streamed deltas) or an object (Anthropic, Gemini)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    import json

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}
