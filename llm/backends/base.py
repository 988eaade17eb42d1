"""The backend base class: what every adapter (and a user's custom backend) implements, and the shared work it gets.

`from llm.base import LLMBackend` keeps working: `llm.base` (the value types) re-exports it, loaded on first use, so
that the types never depend on this layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

from llm.base import FinishReason, LLMConfig, LLMRequest, LLMResponse, ResponseDone, StreamEvent, TextDelta, ToolCall
from llm.core.awaitables import maybe_await
from llm.core.secrets import redact

__all__ = ["LLMBackend", "describe_error", "quiet_cleanup"]


def describe_error(exc: BaseException, secret: str | None = None) -> str:
    """`ClassName: message` on one line, with `secret` (the backend's key) and anything shaped like a key masked."""
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()), (secret,))


class LLMBackend(ABC):
    """A chat backend. Subclasses implement the five abstract methods; `stream` has a default built on
    `stream_generate`, so a custom backend gets the typed event stream for free.

    Attributes:
        config: how to reach the backend.
        logger: the backend's logger, `llm.<backend>`.
    """

    #: The closed interval of `temperature` the vendor accepts.
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)
    #: Why the last `health_check()` failed (secret-free), for `BackendHealth.last_error`; see `_probe_failed`.
    health_error: str | None = None

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        import logging  # imported where used: logging is a good part of `import llm`

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

    async def list_models(self) -> list[str]:
        """The models this backend serves, asking the vendor where it can (`scout-llm models`).

        This default answers from `get_available_models()`, or the configured model when that is empty.

        Raises:
            LLMError: the listing failed.
        """
        return self.get_available_models() or [self.config.model_name]

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
            await maybe_await(close())
        self._client = None
        self._initialized = False

    # -- helpers shared by the adapters ----------------------------------------------------------------------------

    def _probe_failed(self, exc: BaseException) -> bool:
        """Record why a health check failed (the key masked) and return False: `except ...: return
        self._probe_failed(exc)` in a `health_check()` that must not raise."""
        self.health_error = describe_error(exc, self.config.secret())
        self.logger.debug("%s health check failed: %s", self.name, self.health_error)
        return False

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


async def quiet_cleanup(backend: LLMBackend) -> None:
    """`backend.cleanup()`, with a failure logged instead of raised (the contract's cleanup semantics)."""
    try:
        await maybe_await(backend.cleanup())
    except Exception as exc:
        import logging

        logging.getLogger("llm.manager").warning("cleanup of %s failed: %s", backend.name,
                                                 describe_error(exc, backend.config.secret()))
