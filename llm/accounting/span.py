"""The span of one manager call: `CallSpan` (the interface, and the no-op every call gets when telemetry is off) and
the active span that records the call's attributes, attempt events and metrics (README "Cost, budgets and
telemetry"). Telemetry never changes a call's outcome: whatever an OpenTelemetry SDK call raises (a span processor's
`on_start` or `on_end`, a meter's `record`) is logged by `telemetry_failed` and the span records nothing more."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec

from llm.accounting.semconv import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    answered_sets,
    call_attributes,
    input_content,
    output_content,
    provider_name,
    request_attributes,
    response_attributes,
)

__all__ = ["NOOP_SPAN", "SCOPE", "CallSpan", "telemetry_failed"]

#: The instrumentation scope of scout-llm's tracer and meter.
SCOPE: Final = "scout_llm"

logger = logging.getLogger("llm.telemetry")
_P = ParamSpec("_P")
_warned = False


def telemetry_failed(exc: Exception, doing: str) -> None:
    """An OpenTelemetry call raised while `doing`: said once per process as a warning (a broken processor or meter
    fails on every call), then at debug level."""
    global _warned
    level, _warned = (logging.DEBUG if _warned else logging.WARNING), True
    logger.log(level, "telemetry failed while %s (%s: %s); the call goes on without it", doing,
               type(exc).__name__, exc)


class CallSpan:
    """One manager call as seen by telemetry. This base class is the no-op: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> CallSpan:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def attempt(self, backend: str, model: str, outcome: str, elapsed: float, status_code: int | None = None) -> None:
        """One attempt of the call ended: `outcome` is "ok", "cancelled", "skipped: ..." or an error class name."""

    def first_chunk(self) -> None:
        """A stream's first event reached the caller."""

    def finish(self, response: Any) -> None:
        """The call succeeded with `response` (an `LLMResponse`)."""

    def fail(self, exc: BaseException) -> None:
        """The call failed with `exc`."""


#: The span every call gets when telemetry is off.
NOOP_SPAN: Final = CallSpan()


class _Instruments:
    """The tracer and metric instruments of an active `LLMTelemetry`."""

    __slots__ = ("capture_content", "duration", "status_error", "tokens", "tracer", "ttfc", "use_span", "client_kind")

    def __init__(self, tracer_provider: Any, meter_provider: Any, capture_content: bool) -> None:
        from opentelemetry import metrics, trace

        self.capture_content = capture_content
        self.client_kind = trace.SpanKind.CLIENT
        self.status_error = trace.Status(trace.StatusCode.ERROR)
        self.use_span = trace.use_span
        self.tracer = None if tracer_provider is None else trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self.duration = self.tokens = self.ttfc = None
        if meter_provider is not None:
            meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
            self.tokens = meter.create_histogram(
                "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
            self.ttfc = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk", unit="s",
                description="Time to receive the first chunk of a streamed answer",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS)


def _guarded(method: Callable[Concatenate[_ActiveSpan, _P], None]) -> Callable[Concatenate[_ActiveSpan, _P], None]:
    """`method`, with whatever the SDK raises in it logged and the span retired (`_ActiveSpan._retire`)."""
    def guarded(self: _ActiveSpan, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        if self._done:
            return
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            self._retire(exc, method.__name__)
    return guarded


class _ActiveSpan(CallSpan):
    __slots__ = ("_activation", "_attempts", "_attrs", "_base", "_done", "_inst", "_span", "_started")

    def __init__(self, inst: _Instruments, request: Any, model: str, backend: str, base_url: str | None,
                 stream: bool, activate: bool) -> None:
        self._inst = inst
        self._base = (backend, base_url, model)
        self._attempts: list[tuple[str, str, str, float, int | None, int]] | None = None
        self._started = time.monotonic()
        self._done = False
        name, self._attrs = call_attributes(backend, base_url, model)  # the metric attributes: low cardinality
        span = None
        if inst.tracer is not None:
            attrs = dict(self._attrs)
            attrs["gen_ai.request.stream"] = stream
            request_attributes(attrs, request)
            if inst.capture_content:
                input_content(attrs, request)
            span = inst.tracer.start_span(name, kind=inst.client_kind, attributes=attrs)
        # Activated even when sampled out, so that child spans see the sampling decision.
        self._activation = inst.use_span(span) if activate and span is not None else None
        # A span the sampler dropped records nothing: skip building its attributes and events.
        self._span = span if span is not None and span.is_recording() else None

    def __enter__(self) -> CallSpan:
        if self._activation is not None:
            try:
                self._activation.__enter__()
            except Exception as exc:
                self._activation = None
                self._retire(exc, "activating the span")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.fail(exc)
        else:
            self._end(None)
        if self._activation is not None:
            try:
                self._activation.__exit__(None, None, None)  # our own status handling above, not use_span's
            except Exception as exc_:
                telemetry_failed(exc_, "deactivating the span")

    def _retire(self, exc: Exception, doing: str) -> None:
        """An SDK call raised: log it, and end the span if it is still open; it records nothing more."""
        telemetry_failed(exc, doing)
        if not self._done and self._span is not None:
            self._done = True
            try:
                self._span.end()
            except Exception as again:
                telemetry_failed(again, "ending the span")
        self._done = True

    def attempt(self, backend: str, model: str, outcome: str, elapsed: float, status_code: int | None = None) -> None:
        if self._span is not None:
            if self._attempts is None:
                self._attempts = []
            self._attempts.append((backend, model, outcome, elapsed, status_code, time.time_ns()))

    def _attempt_events(self, span: Any) -> None:
        """An event per attempt, unless the call was answered by its first attempt (the span is that attempt): the
        common case pays for no event."""
        attempts = self._attempts
        if attempts is None or (len(attempts) == 1 and attempts[0][2] == "ok"):
            return
        for backend, model, outcome, elapsed, status_code, when in attempts:
            attrs: dict[str, Any] = {"scout_llm.backend": backend, "gen_ai.provider.name": provider_name(backend),
                                     "gen_ai.request.model": model, "scout_llm.attempt.outcome": outcome,
                                     "scout_llm.attempt.duration": elapsed}
            if status_code is not None:
                attrs["http.response.status_code"] = status_code
            if outcome not in ("ok", "cancelled") and not outcome.startswith("skipped"):
                attrs["error.type"] = outcome.split(" ", 1)[0]
            span.add_event("scout_llm.attempt", attrs, timestamp=when)

    @_guarded
    def first_chunk(self) -> None:
        elapsed = time.monotonic() - self._started
        if self._span is not None:
            self._span.set_attribute("gen_ai.response.time_to_first_chunk", elapsed)
        if self._inst.ttfc is not None:
            self._inst.ttfc.record(elapsed, self._attrs)

    @_guarded
    def finish(self, response: Any) -> None:
        backend = str(getattr(response, "backend_type", "") or "")
        model = getattr(response, "model", None)
        usage = getattr(response, "usage", None) or {}
        duration_attrs, input_attrs, output_attrs = answered_sets(self._base, backend,
                                                                   model if isinstance(model, str) else None)
        self._attrs = duration_attrs
        span = self._span
        if span is not None:
            served = response_attributes(response, usage, backend)
            if backend and backend != self._base[0]:
                served["gen_ai.provider.name"] = duration_attrs["gen_ai.provider.name"]
            if self._inst.capture_content:
                served["gen_ai.output.messages"] = output_content(response)
            span.set_attributes(served)
        tokens = self._inst.tokens
        if tokens is not None:
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int):
                tokens.record(prompt, input_attrs)
            if isinstance(completion, int):
                tokens.record(completion, output_attrs)
        self._end(None)

    @_guarded
    def fail(self, exc: BaseException) -> None:
        error_type = _error_type(exc)
        if self._span is not None:
            self._span.set_attribute("error.type", error_type)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                self._span.set_attribute("http.response.status_code", status)
            self._span.set_status(self._inst.status_error)
        self._end(error_type)

    @_guarded
    def _end(self, error_type: str | None) -> None:
        if self._inst.duration is not None:
            attrs = self._attrs if error_type is None else {**self._attrs, "error.type": error_type}
            self._inst.duration.record(time.monotonic() - self._started, attrs)
        span, self._done = self._span, True  # done before `end()`: a processor raising in it has still ended it
        if span is not None:
            try:
                self._attempt_events(span)
            finally:
                span.end()


def _error_type(exc: BaseException) -> str:
    """`error.type`: the exception's class only; its message is never recorded (vendors echo prompt text in some)."""
    return type(exc).__name__
