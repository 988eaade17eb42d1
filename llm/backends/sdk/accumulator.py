"""`StreamAccumulator`: builds one `LLMResponse` out of stream events, for streams and whole answers alike."""

from __future__ import annotations

from typing import Any

from llm.backends.base import LLMBackend
from llm.base import FinishReason, LLMResponse, StreamEvent, TextDelta, ToolCall, ToolCallDelta, parse_tool_arguments
from llm.errors import LLMServerError


class StreamAccumulator:
    """Builds one `LLMResponse` out of events; used for streams and, fed in one go, for whole answers."""

    __slots__ = ("finish_reason", "metadata", "model", "started", "text_parts", "tool_parts", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.text_parts: list[str] = []
        self.tool_parts: dict[int, list[Any]] = {}
        self.usage: dict[str, int] | None = None
        self.finish_reason: FinishReason | None = None
        self.metadata: dict[str, Any] = {}
        self.started = False

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def add(self, event: StreamEvent) -> None:
        """Take one event. An event whose fields are not the types `TextDelta` / `ToolCallDelta` declare (a vendor
        sent `"content": 12345`) raises `LLMServerError`: a malformed answer, not our `TypeError`."""
        if isinstance(event, TextDelta):
            if type(event.text) is not str:
                raise _bad_event("text", event.text)
            self.started = True
            self.text_parts.append(event.text)
        elif isinstance(event, ToolCallDelta):
            _check_tool_delta(event)
            self.started = True
            part = self.tool_parts.setdefault(event.index, [None, None, []])
            if event.id:
                part[0] = event.id
            if event.name:
                part[1] = event.name
            if event.arguments:
                part[2].append(event.arguments)
        else:
            self.started = True

    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for index in sorted(self.tool_parts):
            call_id, name, fragments = self.tool_parts[index]
            raw = "".join(fragments)
            calls.append(
                ToolCall(id=call_id or f"call_{index}", name=name or "", arguments=parse_tool_arguments(raw),
                         raw_arguments=raw or "{}")
            )
        return calls

    def to_response(self, backend: LLMBackend, response_time: float, raw: Any = None) -> LLMResponse:
        """The whole answer. Usage the vendor never reported stays unknown: `{}` and `metadata["usage_unknown"]`."""
        tool_calls = self.tool_calls()
        finish = self.finish_reason or ("tool_calls" if tool_calls else "stop")
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        return backend._create_response(
            self.text,
            self.model,
            usage=self.usage or {},
            metadata=self.metadata,
            response_time=response_time,
            raw_response=raw,
            tool_calls=tool_calls,
            finish_reason=finish,
        )


def _bad_event(field_name: str, value: Any) -> LLMServerError:
    return LLMServerError(f"malformed response from the vendor: {field_name} is a {type(value).__name__}, "
                          "not text")


def _check_tool_delta(event: ToolCallDelta) -> None:
    if isinstance(event.index, bool) or not isinstance(event.index, int):
        raise _bad_event("a tool call's index", event.index)
    for field_name in ("id", "name"):
        value = getattr(event, field_name)
        if value is not None and type(value) is not str:
            raise _bad_event(f"a tool call's {field_name}", value)
    if type(event.arguments) is not str:
        raise _bad_event("a tool call's arguments", event.arguments)
