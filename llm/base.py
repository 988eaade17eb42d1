"""The value types every layer shares: `LLMConfig`, `LLMRequest`, `LLMResponse`, `ToolCall`, the stream events and
`APIKey`, with the field names, order and defaults ScoutAgent's callers use (README "ScoutAgent compatibility"). Plain
dataclasses: they are built on every call, and validation runs once, before any I/O (`llm/core/validation.py`).
`LLMBackendType` and the error tree are re-exported here for `from llm.base import ...`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

from llm.accounting.pricing import CostField
from llm.core.bounds import MAX_INT32, checked_int, checked_number, checked_seconds
from llm.core.lazy import lazy_attributes
from llm.core.names import LLMBackendType, canonical_backend
from llm.errors import *  # noqa: F403  (the error tree, for `from llm.base import LLMError`)
from llm.errors import LLMConfigError
from llm.errors import __all__ as _error_names

__all__ = [
    "APIKey",
    "FinishReason",
    "LLMBackendType",
    "LLMConfig",
    "LLMRequest",
    "LLMResponse",
    "ResponseDone",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
]
__all__ += _error_names


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


def _backend_type(value: object) -> LLMBackendType:
    if isinstance(value, LLMBackendType):
        return value
    try:
        return LLMBackendType(canonical_backend(value if isinstance(value, str) else ""))
    except ValueError:
        raise LLMConfigError(f"Unknown backend_type {value!r:.60}; expected one of "
                             f"{', '.join(b.value for b in LLMBackendType)}") from None


def _typed(name: str, kind: type, optional: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, kind) or (optional and value is None):
            return value
        raise LLMConfigError(f"{name} must be a {kind.__name__}{' or None' if optional else ''}, "
                             f"got {type(value).__name__}")
    return check


#: The check of each `LLMConfig` field, run on every assignment; each returns the value to store.
_CONFIG_CHECKS: dict[str, Callable[[Any], Any]] = {
    "backend_type": _backend_type,
    "model_name": _typed("model_name", str),
    "api_key": lambda value: None if value is None else _as_api_key(value),
    "base_url": _typed("base_url", str, optional=True),
    "temperature": lambda value: checked_number("temperature", value, 0.0, 2.0, error=LLMConfigError),
    "max_tokens": lambda value: checked_int("max_tokens", value, 1, MAX_INT32, error=LLMConfigError),
    "timeout": lambda value: checked_seconds("timeout", value, error=LLMConfigError),
    "retry_attempts": lambda value: checked_int("retry_attempts", value, 1, error=LLMConfigError),
    "retry_delay": lambda value: checked_seconds("retry_delay", value, allow_zero=True, error=LLMConfigError),
    "extra_params": _typed("extra_params", dict),
}


@dataclass
class LLMConfig:
    """How to reach one backend.

    `api_key` may be given as a `str` or a pydantic `SecretStr`; it is kept as an `APIKey`, which equals its plain
    string (`config.api_key == "test-key"`) but never shows in `repr()`, `str()` or logs.

    Every field is checked when set (construction included), so a value that does not fit raises `LLMConfigError`
    naming the field, before any call: `temperature` a number in [0, 2] (a backend may accept less: Claude's is
    [0, 1]), `max_tokens` an integer from 1 to 2**31 - 1, `retry_attempts` (attempts per call, the first included)
    an integer >= 1, `timeout` seconds > 0, `retry_delay` seconds >= 0, `model_name` a string, `base_url` a string
    or None, `extra_params` a dict.
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

    def __setattr__(self, name: str, value: Any) -> None:
        # Every assignment, the constructor's included, is checked: a value set later cannot bypass the rules, and a
        # key set later is wrapped too, so it never shows in clear.
        check = _CONFIG_CHECKS.get(name)
        object.__setattr__(self, name, value if check is None else check(value))

    def secret(self) -> str | None:
        """The API key in clear text (a plain `str`), for handing to an SDK client; None when unset or empty."""
        key = self.api_key
        return key.get_secret_value() or None if isinstance(key, APIKey) else key or None


@dataclass
class LLMRequest:
    """One chat request: OpenAI-style message dicts plus sampling settings.

    `extra_params` takes `model_name_override` and the sampling extras in `SAMPLING_PARAMS`; anything else is rejected
    by validation instead of silently reaching an SDK.

    `response_format` asks for structured output (`llm.output.spec`): a pydantic model class, a JSON-schema dict in
    OpenAI's shape (`{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`) or
    `{"type": "json_object"}`. Each backend sends its vendor's native form; the answer's `parsed` holds the result.
    """

    messages: list[dict[str, Any]]
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)
    response_format: type[Any] | dict[str, Any] | None = None


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
    """One answer. A response that exists succeeded: failures raise an `LLMError` instead.

    `cost_usd` is what the call cost in USD, priced by genai-prices from `usage` and the model that answered
    (`llm.accounting.pricing`); None when the price is unknown (a local model, an unlisted model, usage not reported).
    The manager sets it; it is computed on first read.

    `parsed` is the structured answer when the request had a `response_format`: the validated pydantic model instance,
    or the parsed JSON value for a schema dict or `json_object`; None when no `response_format` was asked.
    """

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
    cost_usd: float | None = None
    parsed: Any = None

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
setattr(LLMResponse, "cost_usd", CostField())  # noqa: B010  (the manager attaches a `DeferredCost`)


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


# `from llm.base import LLMBackend, validate_request` (ScoutAgent's import path) loads them from their homes on first
# use, so that these types never import the layers built on them.
_HOMES = {"LLMBackend": "llm.backends.base", "validate_request": "llm.core.validation"}


_load = lazy_attributes(__name__, _HOMES, globals())


def __getattr__(name: str) -> Any:
    return _load(name)


def parse_tool_arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Tool-call arguments as a dict, from JSON text (OpenAI, streamed deltas) or an object (Anthropic, Gemini)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    import json

    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, a number too long to read, or nesting too deep
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}
