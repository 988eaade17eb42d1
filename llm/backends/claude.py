"""Anthropic Claude adapter, on the official `anthropic` async SDK (Messages API).

API reference: https://docs.anthropic.com/en/api/messages
Streaming events: https://docs.anthropic.com/en/docs/build-with-claude/streaming
Errors: https://docs.anthropic.com/en/api/errors

Request translation is in `llm.backends.claude_request`. Requests and answers are the Messages API's JSON, sent
through the SDK's generic call (`llm.backends.sdk.stainless`), so `temperature`, `top_p` and `top_k`, which the API
takes but `messages.create()` no longer types, go in the body as they are; `raw_response` is the SDK's `Message`,
built when first read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from llm.accounting.usage import anthropic_usage
from llm.backends.claude_request import (
    to_anthropic_messages,
    to_anthropic_sampling,
    to_anthropic_tool_choice,
    to_anthropic_tools,
)
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.conventions import normalise_finish_reason
from llm.backends.sdk.error_map import error_for_status
from llm.backends.sdk.stainless import HEADERS_KEY, StainlessBackend, request_headers
from llm.backends.sdk.transport import transport_failure
from llm.base import DeferredRaw, FinishReason, LLMRequest, LLMResponse, StreamEvent, TextDelta, ToolCallDelta
from llm.errors import LLMBackendError, LLMConnectionError, LLMError, LLMServerError, LLMTimeoutError

__all__ = ["ClaudeBackend", "map_finish_reason", "translate_anthropic_error"]

#: Used when no base URL is configured, so the SDK never takes one from the `ANTHROPIC_BASE_URL` environment variable.
DEFAULT_BASE_URL = "https://api.anthropic.com"

#: Anthropic `stop_reason` -> our finish reason. https://docs.anthropic.com/en/api/handling-stop-reasons
FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic error codes (`error.type`, `error.details.error_code`) meaning an exhausted spend limit or balance, mapped
#: to the shared table's quota code. https://docs.anthropic.com/en/api/errors
QUOTA_CODES = {
    "billing_error": "insufficient_quota",
    "contract_spend_limit_reached": "insufficient_quota",
    "enforced_spend_limit_reached": "insufficient_quota",
    "linked_organization_spend_limit_reached": "insufficient_quota",
}
# An empty prepaid balance comes back as a plain 400 invalid_request_error; only its wording tells it apart.
QUOTA_PHRASES = ("credit balance is too low",)


def map_finish_reason(reason: str | None) -> FinishReason | None:
    """Anthropic's `stop_reason` -> stop / length / tool_calls / content_filter (None while unknown)."""
    return normalise_finish_reason(FINISH_REASONS, reason)


def anthropic_message(data: Any) -> Any:
    """The SDK's `Message` for an answer's JSON (what `raw_response` holds, built when first read)."""
    from anthropic.types import Message

    return Message.construct(**data)


# -- response and stream translation ---------------------------------------------------------------------------------


#: Metadata flag set by `message_stop` and removed again by `_check_stream_end`.
_STOPPED = "_message_stop"
#: Metadata entry (removed by `_check_stream_end`): content block index -> tool call index, and tool call id -> index.
_TOOL_BLOCKS = "_tool_blocks"


def _on_message_start(event: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    message = event["message"]
    acc.model = message.get("model") or acc.model
    acc.metadata["id"] = message.get("id")
    if message.get("usage") is not None:
        acc.usage = anthropic_usage(message["usage"])
    return ()


def _tool_index(acc: StreamAccumulator, block_index: Any, call_id: Any) -> Any:
    """The tool call a `tool_use` block adds to. Each block is its own call, as in a whole answer; only a block
    repeating the id of a call whose arguments are not yet complete JSON continues that call (some proxies stream one
    call as several blocks with the same id)."""
    blocks = acc.metadata.setdefault(_TOOL_BLOCKS, {})
    earlier = blocks.get(("id", call_id)) if call_id else None
    index = earlier if earlier is not None and not _complete_arguments(acc, earlier) else block_index
    if call_id:
        blocks[("id", call_id)] = index
    blocks[block_index] = index
    return index


def _complete_arguments(acc: StreamAccumulator, index: Any) -> bool:
    """Whether the arguments streamed so far for call `index` are one whole JSON value."""
    part = acc.tool_parts.get(index)
    raw = "".join(part[2]) if part is not None else ""
    if not raw.strip():
        return False
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _on_block_start(event: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    block = event["content_block"]
    kind = block.get("type")
    if kind == "tool_use":
        index = _tool_index(acc, event["index"], block.get("id"))
        return (ToolCallDelta(index=index, id=block.get("id"), name=block.get("name")),)
    if kind == "text" and block.get("text"):
        return (TextDelta(block["text"]),)
    return ()


def _on_block_delta(event: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    delta = event["delta"]
    kind = delta.get("type")
    if kind == "text_delta":
        text = delta.get("text")
        return (TextDelta(text),) if text else ()
    if kind == "input_json_delta" and delta.get("partial_json"):
        index = acc.metadata.get(_TOOL_BLOCKS, {}).get(event["index"], event["index"])
        return (ToolCallDelta(index=index, arguments=delta["partial_json"]),)
    return ()


def _on_message_delta(event: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    delta = event.get("delta") or {}
    if delta.get("stop_reason"):
        acc.finish_reason = map_finish_reason(delta["stop_reason"])
        acc.metadata.update(stop_reason=delta["stop_reason"], stop_sequence=delta.get("stop_sequence"))
    if event.get("usage") is not None:
        acc.usage = anthropic_usage(event["usage"], acc.usage)
    return ()


def _on_message_stop(event: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    acc.metadata[_STOPPED] = True
    return ()


EventHandler = Callable[[Any, StreamAccumulator], Iterable[StreamEvent]]
#: Stream event type -> handler. `ping` and `content_block_stop` carry nothing we need; `error` events are raised as
#: the SDK's `APIStatusError` by its `AsyncStream` and mapped in `_translate_error`.
EVENT_HANDLERS: dict[str, EventHandler] = {
    "message_start": _on_message_start,
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "message_delta": _on_message_delta,
    "message_stop": _on_message_stop,
}


class ClaudeBackend(StainlessBackend):
    """Messages API through `anthropic.AsyncAnthropic`; one pooled client per backend, SDK retries off.

    Takes the arguments of `llm.backends.sdk.stainless.StainlessBackend`.
    """

    display_name: ClassVar[str] = "Anthropic"
    sdk_module: ClassVar[str] = "anthropic"
    sdk_client: ClassVar[str] = "AsyncAnthropic"
    generate_path: ClassVar[str] = "/v1/messages"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    key_variable: ClassVar[str | None] = "SCOUT_ANTHROPIC_API_KEY"
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: Structured outputs take an object schema, without recursion, and have no schema-less JSON mode.
    schema_rules: ClassVar[frozenset[str]] = frozenset({"object_root", "no_recursion"})
    takes_json_object: ClassVar[bool] = False

    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        effective = self._get_effective_config(request)
        system, messages = to_anthropic_messages(request.messages, request.system_prompt)
        params: dict[str, Any] = {"model": model, "max_tokens": effective["max_tokens"], "messages": messages}
        if system:
            params["system"] = system
        params.update(to_anthropic_sampling(effective))
        if request.tools:
            params["tools"] = to_anthropic_tools(request.tools)
            if request.tool_choice is not None:
                params["tool_choice"] = to_anthropic_tool_choice(request.tool_choice)
        if stream:
            params["stream"] = True
        headers = request_headers(effective)
        if headers:
            params[HEADERS_KEY] = headers
        return params

    def _stream_opened(self, chunks: Any, acc: StreamAccumulator) -> None:
        acc.metadata["request_id"] = chunks.response.headers.get("request-id")

    def _convert_response(self, raw: Any, model: str) -> LLMResponse:
        data, headers = raw
        acc = StreamAccumulator(data.get("model") or model)
        events: list[StreamEvent] = []
        for index, block in enumerate(data.get("content") or ()):
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                events.append(TextDelta(block["text"]))
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                events.append(ToolCallDelta(index, block.get("id"), block.get("name"), arguments))
        stop_reason = data.get("stop_reason")
        acc.finish_reason = map_finish_reason(stop_reason)
        acc.usage = anthropic_usage(data.get("usage"))
        acc.metadata.update(id=data.get("id"), stop_reason=stop_reason, stop_sequence=data.get("stop_sequence"),
                            request_id=headers.get("request-id"))
        return self._convert_response_events(acc, events, DeferredRaw(anthropic_message, data))

    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
        handler = EVENT_HANDLERS.get(chunk.get("type", ""))
        return handler(chunk, acc) if handler is not None else ()

    def _check_stream_end(self, acc: StreamAccumulator) -> None:
        """A stream that ends without `message_stop` was cut off: the answer may be incomplete."""
        acc.metadata.pop(_TOOL_BLOCKS, None)
        if not acc.metadata.pop(_STOPPED, False):
            raise LLMConnectionError("stream ended before message_stop", backend=self.name, model=acc.model)

    def _translate_error(self, exc: Exception, model: str) -> LLMError:
        return translate_anthropic_error(exc, backend=self.name, model=model)

    async def _list_models(self) -> list[str]:
        page = await self._client.models.list(limit=1000)
        return [item.id for item in page.data]


def _error_fields(exc: Any) -> tuple[str, str, str | None]:
    """(message, code, request_id) out of an `APIStatusError` and its body `{"type": "error", "error": {...}}`."""
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    message = str(error.get("message") or exc.message)
    code = str(getattr(exc, "error_code", None) or error.get("type") or "")
    if any(phrase in message.lower() for phrase in QUOTA_PHRASES):
        code = "insufficient_quota"
    request_id = getattr(exc, "request_id", None) or body.get("request_id")
    return message, QUOTA_CODES.get(code, code), request_id


def translate_anthropic_error(exc: Exception, *, backend: str, model: str) -> LLMError:
    """An `anthropic` SDK (or transport) exception -> the most specific `LLMError`."""
    import anthropic
    import httpx2

    # What lies underneath decides first: aiohttp errors the transport does not map escape as they are.
    failure = None if isinstance(exc, anthropic.APIStatusError) else transport_failure(exc)
    timeouts = (anthropic.APITimeoutError, httpx2.TimeoutException)
    if failure == "timeout" or (failure is None and isinstance(exc, timeouts)):
        return LLMTimeoutError(f"request timed out: {exc}", backend=backend, model=model)
    if failure == "connection" or isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return LLMConnectionError(f"connection failed: {exc}", backend=backend, model=model)
    if isinstance(exc, anthropic.APIStatusError):
        message, code, request_id = _error_fields(exc)
        # An `event: error` inside a 200 stream arrives with the stream's status: its code decides (CODE_STATUS).
        status = exc.status_code if exc.status_code >= 400 else None
        return error_for_status(status, message, code=code, headers=exc.response.headers, backend=backend,
                                model=model, request_id=request_id)
    if isinstance(exc, anthropic.APIResponseValidationError | ValueError):  # malformed JSON body or SSE data
        return LLMServerError(f"malformed response from the vendor: {exc}", backend=backend, model=model)
    return LLMBackendError(f"{type(exc).__name__}: {exc}", backend=backend, model=model)
