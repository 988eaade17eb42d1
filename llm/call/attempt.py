"""What an attempt of a manager call runs: `generate_op` (a whole answer) or `open_stream_op` (a stream opened up to
its first event), on any backend (`backend_events` gives a custom backend's stream the adapters' typed shape), and
`model_for`, the model an attempt names. `llm.call.chain` runs them under retry, failover and the call's deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from types import CoroutineType
from typing import Any

from llm.accounting.usage import usage_dict
from llm.backends.base import LLMBackend
from llm.base import LLMRequest, LLMResponse, ResponseDone, StreamEvent, TextDelta, ToolCallDelta
from llm.core.awaitables import maybe_await
from llm.errors import LLMBackendError, LLMError, LLMStreamError
from llm.fleet.limiter import Permit
from llm.health.slot import BackendSlot

__all__ = ["OpenedStream", "backend_events", "bad_event", "generate_op", "model_for", "open_stream_op"]


def model_for(backend: LLMBackend, request: LLMRequest) -> str:
    """The model `backend` answers `request` with, for the trail, the span and errors: its `resolve_model`.

    A duck-typed backend (ScoutAgent's `Mock`s) gets the base class's rule, as does a backend that refuses the model
    asked for (the local one serves only its own): its attempt raises the refusal, recorded and failed over as any
    other error.
    """
    if LLMBackend in type(backend).__mro__:  # not isinstance: an ABC's check costs a Python call on every attempt
        try:
            model = backend.resolve_model(request)
        except LLMError:
            model = None
        if type(model) is str:
            return model
    return LLMBackend.resolve_model(backend, request)


# -- the two operations an attempt can run ----------------------------------------------------------------------------


async def generate_op(slot: BackendSlot, request: LLMRequest, release: Callable[[], None]) -> LLMResponse:
    """A non-streamed answer; the concurrency slot is given back when it ends."""
    try:
        pending = slot.backend.generate(request)  # an adapter's coroutine is awaited as it is, with no wrapper
        return _checked(slot, await (pending if type(pending) is CoroutineType else maybe_await(pending)))
    finally:
        release()


def _checked(slot: BackendSlot, response: Any) -> LLMResponse:
    # `generate` may be a plain function or a Mock (ScoutAgent's tests write backends so); what it returns must
    # still be an answer.
    if not isinstance(response, LLMResponse):
        raise LLMBackendError(f"{slot.name}: generate() returned {type(response).__name__}, not an LLMResponse",
                              backend=slot.name)
    return response


def backend_events(backend: LLMBackend, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
    """A backend's typed event stream: its own `stream()` when its class overrides it (the adapters), else one
    built on its `stream_generate` (a custom backend, a Mock, or an adapter whose `stream_generate` was replaced)."""
    own_stream = isinstance(backend, LLMBackend) and type(backend).stream is not LLMBackend.stream
    if own_stream and "stream_generate" not in vars(backend):
        return backend.stream(request)
    return _text_events(backend, request)


async def _text_events(backend: LLMBackend, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
    """`stream_generate`'s chunks as `TextDelta`s, then one `ResponseDone`. `stream_generate` may return an async
    iterator, a plain iterable (a Mock's list) or an awaitable of either."""
    chunks = await maybe_await(backend.stream_generate(request))
    parts: list[str] = []
    if hasattr(chunks, "__aiter__"):
        async for chunk in chunks:
            parts.append(str(chunk))
            yield TextDelta(parts[-1])
    else:
        for chunk in chunks:
            parts.append(str(chunk))
            yield TextDelta(parts[-1])
    content, model = "".join(parts), model_for(backend, request)
    if LLMBackend in type(backend).__mro__:  # a subclass's own response hook applies
        yield ResponseDone(backend._create_response(content, model, finish_reason="stop"))
        return
    yield ResponseDone(LLMResponse(content=content, model=model, backend_type=backend.config.backend_type.value,
                                   usage=usage_dict(None, None), metadata={"finish_reason": "stop",
                                   "usage_unknown": True}, finish_reason="stop"))


@dataclasses.dataclass
class OpenedStream:
    """A backend stream that produced its first event; owns the concurrency slot until `close()`."""

    events: AsyncGenerator[StreamEvent, None]
    first: StreamEvent
    started: float
    release: Callable[[], None]
    permit: Permit | None = None  # the rate limiter's admission, settled at `ResponseDone`

    async def close(self) -> None:
        """Close the backend's stream and give back the concurrency slot and a permit not settled by then."""
        try:
            await self.events.aclose()
        finally:
            self.release()
            if self.permit is not None:
                await self.permit.release()


def bad_event(event: object) -> str | None:
    """Why a backend's stream event is not one (a custom backend's `TextDelta(12345)`), or None when it is."""
    if isinstance(event, TextDelta):
        return None if type(event.text) is str else f"a TextDelta whose text is a {type(event.text).__name__}"
    if isinstance(event, ToolCallDelta):
        return None
    if isinstance(event, ResponseDone):
        return None if isinstance(event.response, LLMResponse) else "a ResponseDone without an LLMResponse"
    return f"a {type(event).__name__} is not a stream event"


async def open_stream_op(slot: BackendSlot, request: LLMRequest, release: Callable[[], None]) -> OpenedStream:
    """Open a backend's typed stream and wait for its first event.

    An answer that is empty but complete (its `ResponseDone` comes first) is delivered as it is, exactly as
    `generate` returns it: it is not retried (each retry would be billed). A stream that ends with no event at all
    never finished: `LLMStreamError`.
    """
    started = time.monotonic()
    events = backend_events(slot.backend, request)
    try:
        first = await anext(events, None)
        problem = "it ended without any event" if first is None else bad_event(first)
        if problem is not None:
            raise LLMStreamError(f"malformed stream: {problem}", partial_content="", backend=slot.name,
                                 model=model_for(slot.backend, request))
    except BaseException:
        try:
            await events.aclose()
        finally:
            release()
        raise
    assert first is not None
    return OpenedStream(events, first, started, release)
