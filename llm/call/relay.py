"""`relay`: a stream call. It opens the stream through the call's chain (retry and failover up to the first event),
then hands the events on: each wait bounded by the idle gap (and the optional whole-stream limit), no retry or
failover after the first event. README.md ("Stream") says what a caller sees; ARCHITECTURE.md shows the path of one
stream.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, Callable
from types import TracebackType

from llm.accounting.ledger import UsageLedger
from llm.accounting.span import CallSpan
from llm.base import LLMResponse, ResponseDone, StreamEvent, TextDelta, ToolCallDelta
from llm.call.attempt import OpenedStream, bad_event, open_stream_op
from llm.call.chain import Call, total_tokens
from llm.call.idle import IdleTimeout
from llm.core.secrets import scrub_exception
from llm.errors import LLMDeadlineExceededError, LLMStreamError, LLMStructuredOutputError
from llm.health.slot import BackendSlot

__all__ = ["StreamScope", "relay"]


async def relay(call: Call, first_chunk: Callable[[BackendSlot], float]) -> AsyncGenerator[StreamEvent, None]:
    """Open a stream with retry and failover, then relay it; after the first event, failures are final.

    The call's deadline bounds the wait for the first event (and failover); after it, each wait for the next event is
    bounded by the idle gap alone, and the whole stream by `Call.stream_timeout` when one is set (from the call's
    start). A stream that ends without its final event is recorded as billed (`_close`).

    The relay is the hot loop of a stream: one idle timer for the whole stream (not one per event), and the wait
    for the next event inlined here rather than in a coroutine of its own.
    """
    call.timed = False
    opened, slot = await call.run(open_stream_op, first_chunk)
    model = call.model
    idle, idle_timeout = IdleTimeout(), call.policy.idle_timeout
    limit, clock, next_event = call.stream_timeout, time.monotonic, opened.events.__anext__
    ends = call.deadline.expires - call.deadline.budget + limit if limit is not None else math.inf
    parts: list[str] = []
    event, done = opened.first, False
    call.span.first_chunk()
    try:
        while not isinstance(event, ResponseDone):
            if isinstance(event, TextDelta) and type(event.text) is str:
                parts.append(event.text)
            elif not isinstance(event, ToolCallDelta):  # a custom backend's malformed event
                raise _malformed(call, event, slot, model, opened, parts)
            yield event
            left = ends - clock()  # inf - x is inf: no stream limit costs one subtraction
            bound = idle_timeout if idle_timeout < left else max(0.0, left)
            try:
                with idle.arm(bound):
                    event = await next_event()
            except LLMStructuredOutputError:  # the answer failed its schema after the repair: not a broken stream
                raise
            except Exception as exc:  # CancelledError and GeneratorExit pass through untouched
                error = _relay_error(exc, slot, model, "".join(parts), bound, idle_timeout, limit)
                scrub_exception(exc, slot.backend.config.secret())  # a custom backend's error may quote its key
                _stream_failed(call, slot, model, opened, error)
                if error is exc:
                    raise
                raise error from (error.__cause__ or (None if isinstance(exc, StopAsyncIteration) else exc))
        if not isinstance(event.response, LLMResponse):
            raise _malformed(call, event, slot, model, opened, parts)
        done = True
        slot.sample_latency(time.monotonic() - opened.started)
        if opened.permit is not None:
            await opened.permit.settle(total_tokens(event.response))
        yield ResponseDone(call.finish(event.response, slot))
    finally:
        idle.close()
        await _close(call, slot, model, opened, None if done else "".join(parts))


async def _close(call: Call, slot: BackendSlot, model: str, opened: OpenedStream, partial: str | None) -> None:
    """End a relay: a stream that stopped after its first event without its final one (failed, closed early,
    cancelled; `partial`: its text) was billed all the same, so it is recorded at an estimated usage and its permit
    settled to that estimate; then the backend's stream is closed."""
    try:
        if partial is not None:
            tokens = call.record_unfinished(slot, model, partial)
            if opened.permit is not None:
                await opened.permit.settle(tokens)
    finally:
        await opened.close()


def _malformed(call: Call, event: object, slot: BackendSlot, model: str, opened: OpenedStream,
               parts: list[str]) -> LLMStreamError:
    """The (recorded) error for a custom backend's event that is not a stream event."""
    error = LLMStreamError(f"malformed stream: {bad_event(event)}", partial_content="".join(parts),
                           backend=slot.name, model=model)
    _stream_failed(call, slot, model, opened, error)
    return error


def _relay_error(exc: Exception, slot: BackendSlot, model: str, partial: str, bound: float,
                 idle_timeout: float, limit: float | None) -> LLMStreamError:
    """The `LLMStreamError` a failure after the first event becomes (a backend's own one stays as it is). A cut by
    the caller's `stream_timeout` is caused by an `LLMDeadlineExceededError`: the caller's, not the backend's."""
    if isinstance(exc, LLMStreamError):
        exc.backend = exc.backend or slot.name
        return exc
    cause = None
    if isinstance(exc, StopAsyncIteration):
        message = "stream ended without its final event"
    elif isinstance(exc, TimeoutError) and bound < idle_timeout:
        message = f"stream cut: its stream_timeout of {limit:g}s passed"
        cause = LLMDeadlineExceededError(message, backend=slot.name, model=model)
    elif isinstance(exc, TimeoutError):
        message = f"stream stalled: no event for {bound:g}s"
    else:  # a custom backend's own failure
        message = f"stream failed after it began: {type(exc).__name__}: {exc}"
    error = LLMStreamError(message, partial_content=partial, backend=slot.name, model=model)
    error.__cause__ = cause
    return error


def _stream_failed(call: Call, slot: BackendSlot, model: str, opened: OpenedStream, error: LLMStreamError) -> None:
    scrub_exception(error, slot.backend.config.secret())
    slot.failed(None, error)
    call.record(slot, model, f"{type(error).__name__} after the first event", opened.started, error.status_code)


class StreamScope:
    """A stream call's life around its relay: the span, the failed attempts told to the ledger, and at the end,
    however it ends (an early `break` and the collector's `aclose()` included), the relay closed and the call's
    budget reservation released. A class rather than a generator-based context manager: it is exited from a
    generator being closed, where a second generator would have to be thrown into as well."""

    __slots__ = ("call", "events", "ledger", "span")

    def __init__(self, ledger: UsageLedger, span: CallSpan, call: Call,
                 events: AsyncGenerator[StreamEvent, None]) -> None:
        self.ledger, self.span, self.call, self.events = ledger, span, call, events

    async def __aenter__(self) -> None:
        self.span.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if isinstance(exc, Exception):
                self.ledger.record_attempts(self.call.attempts)
            self.span.__exit__(kind, exc, tb)
        finally:
            try:
                await self.events.aclose()
            finally:
                self.ledger.release(self.call.reserved)
