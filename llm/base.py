"""Shared value types and the backend base class.

The types keep the field names, order and defaults of the original ScoutAgent `llm/` layer (see README, "ScoutAgent
compatibility"), so existing callers run unchanged: `LLMRequest(messages=[...], temperature=0.7, max_tokens=200)`,
`response.content`, `response.usage["total_tokens"]`, `extra_params["model_name_override"]`.

They are plain dataclasses on purpose: they are built on every call, and validation runs once, explicitly, in
`validate_request` (`llm/validation.py`, re-exported here) before any network call, instead of on every attribute
access.

Usage a vendor did not report is unknown, not zero: `usage == {}` and `metadata["usage_unknown"] is True`
(`usage.get("total_tokens", 0)` keeps working; a real count of zero stays a dict of zeros).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMBackendError,
    LLMBadRequestError,
    LLMCircuitOpenError,
    LLMConfigError,
    LLMConnectionError,
    LLMContentFilterError,
    LLMContextLengthError,
    LLMDeadlineExceededError,
    LLMError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)
from llm.validation import validate_request

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "FinishReason",
    "LLMAllBackendsFailedError",
    "LLMAuthenticationError",
    "LLMBackend",
    "LLMBackendError",
    "LLMBackendType",
    "LLMBadRequestError",
    "LLMCircuitOpenError",
    "LLMConfig",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMContentFilterError",
    "LLMContextLengthError",
    "LLMDeadlineExceededError",
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


@dataclass
class LLMConfig:
    """How to reach one backend. The API key is held as a `SecretStr` and never shown in `repr()`."""

    backend_type: LLMBackendType
    model_name: str
    api_key: SecretStr | None = field(default=None, repr=False)
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
        if self.api_key is not None:
            from pydantic import SecretStr  # here, not at module level: pydantic costs `import llm` ~70 ms

            if not isinstance(self.api_key, SecretStr):
                self.api_key = SecretStr(str(self.api_key))
        _check_seconds("timeout", self.timeout)
        _check_seconds("retry_delay", self.retry_delay, allow_zero=True)

    def secret(self) -> str | None:
        """The API key in clear text, for handing to an SDK client; None when unset or empty."""
        return self.api_key.get_secret_value() or None if self.api_key is not None else None


def _check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """A duration from outside: a finite number of seconds, > 0 (or >= 0). NaN compares false with everything and
    would silently disable every bound built from it; infinity would wait forever."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise LLMConfigError(f"{name} must be a finite number of seconds {'>=' if allow_zero else '>'} 0, "
                             f"got {value!r}")


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


class LLMBackend(ABC):
    """A chat backend. Subclasses implement the five abstract methods; `stream` has a default built on
    `stream_generate`, so a custom backend gets the typed event stream for free.

    Attributes:
        config: how to reach the backend.
        logger: the backend's logger, `llm.<backend>`.
    """

    #: The closed interval of `temperature` the vendor accepts.
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        import logging

        self.logger = logging.getLogger(f"llm.{config.backend_type.value}")
        self._client: Any = None
        self._initialized = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.config.model_name!r}, base_url={self.config.base_url!r})"

    @property
    def name(self) -> str:
        """The name the manager registers this backend under."""
        return self.config.backend_type.value

    @abstractmethod
    async def initialize(self) -> bool:
        """Prepare the client. Makes no billed call. Returns whether the backend is usable."""

    @abstractmethod
    async def generate(self, request: LLMRequest) -> LLMResponse:
        """Answer a request in one piece."""

    @abstractmethod
    def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        """Answer a request as an async iterator of text chunks."""

    @abstractmethod
    async def health_check(self) -> bool:
        """A cheap liveness probe (a models listing), never a billed generation."""

    @abstractmethod
    def get_available_models(self) -> list[str]:
        """Models known to serve requests here; empty when unknown (then any model name is accepted)."""

    async def stream(self, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
        """The typed event stream: text and tool-call deltas, then one `ResponseDone` with the whole answer."""
        parts: list[str] = []
        async for chunk in self.stream_generate(request):
            parts.append(chunk)
            yield TextDelta(chunk)
        model = self.resolve_model(request)
        yield ResponseDone(self._create_response("".join(parts), model, finish_reason="stop"))

    async def cleanup(self) -> None:
        """Close the client and its connections."""
        close = getattr(self._client, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
        self._client = None
        self._initialized = False

    # -- helpers shared by the adapters ----------------------------------------------------------------------------

    def resolve_model(self, request: LLMRequest) -> str:
        """`extra_params["model_name_override"]` if given, else the configured model."""
        override = request.extra_params.get("model_name_override") if request.extra_params else None
        return str(override) if override else self.config.model_name

    def _create_response(
        self,
        content: str,
        model: str,
        usage: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        success: bool = True,
        error: str | None = None,
        response_time: float = 0.0,
        raw_response: Any = None,
        tool_calls: list[ToolCall] | None = None,
        finish_reason: FinishReason | None = None,
    ) -> LLMResponse:
        metadata = metadata if metadata is not None else {}
        if finish_reason is not None:
            metadata.setdefault("finish_reason", finish_reason)
        if not usage:  # the vendor reported no token counts: say so rather than show zeros
            metadata["usage_unknown"] = True
        return LLMResponse(
            content=content,
            model=model,
            backend_type=self.config.backend_type.value,
            usage=usage if usage is not None else {},
            metadata=metadata,
            success=success,
            error=error,
            response_time=response_time,
            raw_response=raw_response,
            tool_calls=tool_calls or [],
            finish_reason=finish_reason,
        )

    def _prepare_messages(self, request: LLMRequest) -> list[dict[str, Any]]:
        """The request's messages, with `system_prompt` (if any) inserted first as a system message."""
        messages = list(request.messages)
        if request.system_prompt:
            messages.insert(0, {"role": "system", "content": request.system_prompt})
        return messages

    def _get_effective_config(self, request: LLMRequest) -> dict[str, Any]:
        """Sampling settings for a call: config extras, then request extras, then explicit temperature/max_tokens.

        An explicit `temperature=0` or `max_tokens` on the request wins; extras cannot override them.
        """
        effective: dict[str, Any] = {**self.config.extra_params, **request.extra_params}
        effective.pop("model_name_override", None)
        effective["temperature"] = self.config.temperature if request.temperature is None else request.temperature
        effective["max_tokens"] = self.config.max_tokens if request.max_tokens is None else request.max_tokens
        return effective


def usage_dict(prompt_tokens: Any, completion_tokens: Any, total: Any = None) -> dict[str, int]:
    """Usage in the shape every response carries: prompt, completion and total token counts.

    Counts come from outside: anything but a finite number >= 0 counts as not reported. When the vendor reported no
    count at all, usage is unknown and this returns `{}`: never zeros, which would read as a real count
    (`usage.get("total_tokens", 0)` still works). A count left out while the others were given counts as 0.
    """
    prompt, completion, given_total = _count(prompt_tokens), _count(completion_tokens), _count(total)
    if prompt is None and completion is None and given_total is None:
        return {}
    prompt, completion = prompt or 0, completion or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": given_total or prompt + completion}


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


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
