"""OpenTelemetry for manager calls, in the GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/): one CLIENT span per call named `chat {model}`, an event per
attempt when the call needed more than one or its only attempt failed, and the metrics
`gen_ai.client.operation.duration`, `gen_ai.client.token.usage` and, for streams,
`gen_ai.client.operation.time_to_first_chunk`.

    telemetry = LLMTelemetry()                                  # the global providers, decided at the first call
    with telemetry.start_call(request, model, backend, base_url=url, stream=False) as span:
        span.attempt("openai", "gpt-4o", "LLMServerError", 0.21, 503)   # each attempt, as the trail records it
        span.first_chunk()                                      # streams: when the first event reaches the caller
        span.finish(response)                                   # success; an exception leaving the block fails it

Span attributes: `gen_ai.operation.name` ("chat"), `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.request.max_tokens` / `temperature` / `top_p` (when the request sets them), `gen_ai.request.stream`,
`server.address` / `server.port` (from the base URL), then `gen_ai.response.model`, `gen_ai.response.id`,
`gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` / `output_tokens` (and the cache-read, cache-creation and
reasoning counts when reported), `scout_llm.backend` (the backend that served), or on failure `error.type` (the
exception's class name, e.g. `LLMRateLimitError`), `http.response.status_code` and an ERROR status. An exception's
message is not recorded (vendors echo prompt text in some); only its class.

Prompt and answer content are recorded only when asked: `LLMTelemetry(capture_content=True)` or
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the variable OpenTelemetry's GenAI instrumentations read),
as `gen_ai.system_instructions`, `gen_ai.input.messages` and `gen_ai.output.messages` (JSON).

Cost when off: without opentelemetry-api installed, or with no SDK configured when the first call starts (the global
tracer and meter providers are still the API's own no-op/proxy ones), the decision is taken once and every later
`start_call` returns a shared no-op span (well under a microsecond). Configure OpenTelemetry at start-up, before the
first LLM call, or call `refresh()` after configuring it. `import llm` never imports opentelemetry.

Where it is used: `LLMManager(telemetry=...)` (default `LLMTelemetry()`, the global providers) starts one span per
`generate` / `stream` / `stream_generate` call after validation and the budget check (activated for `generate`; a
stream's span is not, as its block spans yields), and hands it to the `Call` (`llm/call/chain.py`), which reports each
attempt as its trail records it, the first chunk of a stream, and the answer (`Call.finish`). An exception leaving
the call fails the span; a consumer that stops a stream early (GeneratorExit) ends it without an error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from functools import lru_cache
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "CallSpan",
    "LLMTelemetry",
    "NOOP_SPAN",
    "provider_name",
]

CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SCOPE: Final = "scout_llm"

#: `gen_ai.provider.name` per backend (semconv well-known values where one exists).
BACKEND_PROVIDER_NAMES: Final[Mapping[str, str]] = {
    "openai": "openai", "claude": "anthropic", "gemini": "gcp.gemini", "deepseek": "deepseek",
    "ollama": "ollama", "local": "llama_cpp",
}
#: OpenAI-compatible hosts whose provider has its own well-known name (matched on the host's end).
HOST_PROVIDER_NAMES: Final = (
    ("openai.azure.com", "azure.ai.openai"), ("api.groq.com", "groq"), ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"), ("api.x.ai", "x_ai"), ("api.perplexity.ai", "perplexity"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"), ("api.anthropic.com", "anthropic"),
)
#: Bucket advice from the semantic conventions.
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: Usage counts -> their span attribute.
USAGE_ATTRIBUTES: Final = (
    ("prompt_tokens", "gen_ai.usage.input_tokens"),
    ("completion_tokens", "gen_ai.usage.output_tokens"),
    ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_creation_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
)


_USAGE_NAMES: Final = dict(USAGE_ATTRIBUTES)
_NUMBER: Final = (int, float)


@lru_cache(maxsize=64)
def _server(base_url: str | None) -> tuple[str | None, int | None]:
    if not base_url:
        return None, None
    try:
        parts = urlsplit(base_url)
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None, None


@lru_cache(maxsize=64)
def provider_name(backend: str, base_url: str | None = None) -> str:
    """`gen_ai.provider.name` for a backend: by the base URL's host when it names a known provider, else by backend."""
    host = _server(base_url)[0]
    if host:
        for suffix, name in HOST_PROVIDER_NAMES:
            if host == suffix or host.endswith("." + suffix):
                return name
    return BACKEND_PROVIDER_NAMES.get(backend, backend)


def _error_type(exc: BaseException) -> str:
    return type(exc).__name__


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


@lru_cache(maxsize=256)
def _call_attributes(backend: str, base_url: str | None, model: str) -> tuple[str, Mapping[str, Any]]:
    """The span name and the attributes every call to one backend, endpoint and model shares (also the metric
    attributes until the answer names its model): built once, never changed."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name(backend, base_url),
                             "gen_ai.request.model": model}
    host, port = _server(base_url)
    if host:
        attrs["server.address"], attrs["server.port"] = host, port
    return f"chat {model}", attrs


#: The metric attribute sets of an answered call: (duration, input tokens, output tokens).
MetricSets = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]


@lru_cache(maxsize=256)
def _answered_sets(base: tuple[str, str | None, str], served: str, response_model: str | None) -> MetricSets:
    """The metric attributes of a call to `base` (backend, base URL, model) answered by backend `served` with
    `response_model`: built once per combination and shared by every record (the SDK does not change them)."""
    attrs = dict(_call_attributes(*base)[1])
    if served and served != base[0]:  # a fallback served: its provider, not the first backend's server
        attrs["gen_ai.provider.name"] = provider_name(served)
        attrs.pop("server.address", None)
        attrs.pop("server.port", None)
    if response_model:
        attrs["gen_ai.response.model"] = response_model
    return attrs, {**attrs, "gen_ai.token.type": "input"}, {**attrs, "gen_ai.token.type": "output"}


class _ActiveSpan(CallSpan):
    __slots__ = ("_activation", "_attempts", "_attrs", "_base", "_done", "_inst", "_span", "_started")

    def __init__(self, inst: _Instruments, request: Any, model: str, backend: str, base_url: str | None,
                 stream: bool, activate: bool) -> None:
        self._inst = inst
        self._base = (backend, base_url, model)
        self._attempts: list[tuple[str, str, str, float, int | None, int]] | None = None
        self._started = time.monotonic()
        self._done = False
        name, self._attrs = _call_attributes(backend, base_url, model)  # the metric attributes: low cardinality
        span = None
        if inst.tracer is not None:
            attrs = dict(self._attrs)
            attrs["gen_ai.request.stream"] = stream
            _request_attributes(attrs, request)
            if inst.capture_content:
                _input_content(attrs, request)
            span = inst.tracer.start_span(name, kind=inst.client_kind, attributes=attrs)
        # Activated even when sampled out, so that child spans see the sampling decision.
        self._activation = inst.use_span(span) if activate and span is not None else None
        # A span the sampler dropped records nothing: skip building its attributes and events.
        self._span = span if span is not None and span.is_recording() else None

    def __enter__(self) -> CallSpan:
        if self._activation is not None:
            self._activation.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self.fail(exc)
            else:
                self._end(None)
        finally:
            if self._activation is not None:
                self._activation.__exit__(None, None, None)  # our own status handling above, not use_span's

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

    def first_chunk(self) -> None:
        elapsed = time.monotonic() - self._started
        if self._span is not None:
            self._span.set_attribute("gen_ai.response.time_to_first_chunk", elapsed)
        if self._inst.ttfc is not None:
            self._inst.ttfc.record(elapsed, self._attrs)

    def finish(self, response: Any) -> None:
        if self._done:
            return
        backend = str(getattr(response, "backend_type", "") or "")
        model = getattr(response, "model", None)
        usage = getattr(response, "usage", None) or {}
        duration_attrs, input_attrs, output_attrs = _answered_sets(self._base, backend,
                                                                   model if isinstance(model, str) else None)
        self._attrs = duration_attrs
        span = self._span
        if span is not None:
            served = _response_attributes(response, usage, backend)
            if backend and backend != self._base[0]:
                served["gen_ai.provider.name"] = duration_attrs["gen_ai.provider.name"]
            if self._inst.capture_content:
                served["gen_ai.output.messages"] = _output_content(response)
            span.set_attributes(served)
        tokens = self._inst.tokens
        if tokens is not None:
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int):
                tokens.record(prompt, input_attrs)
            if isinstance(completion, int):
                tokens.record(completion, output_attrs)
        self._end(None)

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        error_type = _error_type(exc)
        if self._span is not None:
            self._span.set_attribute("error.type", error_type)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                self._span.set_attribute("http.response.status_code", status)
            self._span.set_status(self._inst.status_error)
        self._end(error_type)

    def _end(self, error_type: str | None) -> None:
        if self._done:
            return
        self._done = True
        if self._inst.duration is not None:
            attrs = self._attrs if error_type is None else {**self._attrs, "error.type": error_type}
            self._inst.duration.record(time.monotonic() - self._started, attrs)
        if self._span is not None:
            self._attempt_events(self._span)
            self._span.end()


def _request_attributes(attrs: dict[str, Any], request: Any) -> None:
    max_tokens = getattr(request, "max_tokens", None)
    if isinstance(max_tokens, int):
        attrs["gen_ai.request.max_tokens"] = max_tokens
    temperature = getattr(request, "temperature", None)
    if isinstance(temperature, _NUMBER):
        attrs["gen_ai.request.temperature"] = float(temperature)
    extra = getattr(request, "extra_params", None)
    top_p = extra.get("top_p") if extra else None
    if isinstance(top_p, _NUMBER):
        attrs["gen_ai.request.top_p"] = float(top_p)


def _response_attributes(response: Any, usage: Mapping[str, Any], backend: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if backend:
        attrs["scout_llm.backend"] = backend
    if getattr(response, "model", None):
        attrs["gen_ai.response.model"] = response.model
    metadata = getattr(response, "metadata", None) or {}
    response_id = metadata.get("id") or metadata.get("response_id")
    if isinstance(response_id, str):
        attrs["gen_ai.response.id"] = response_id
    finish = getattr(response, "finish_reason", None)
    if finish:
        attrs["gen_ai.response.finish_reasons"] = (str(finish),)
    for key, value in usage.items():  # a few keys: cheaper than looking up each attribute's
        name = _USAGE_NAMES.get(key)
        if name is not None and isinstance(value, int):
            attrs[name] = value
    return attrs


def _input_content(attrs: dict[str, Any], request: Any) -> None:
    system = getattr(request, "system_prompt", None)
    if system:
        attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])
    attrs["gen_ai.input.messages"] = json.dumps(getattr(request, "messages", None) or [], default=str)


def _output_content(response: Any) -> str:
    message = {"role": "assistant", "content": getattr(response, "content", ""),
               "finish_reason": getattr(response, "finish_reason", None)}
    calls = getattr(response, "tool_calls", None)
    if calls:
        message["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    return json.dumps([message], default=str)


def _is_api_default(provider: Any, api_module: str) -> bool:
    """Whether a global provider is the API's own (proxy or no-op): no SDK is configured."""
    return type(provider).__module__.startswith(api_module)


class LLMTelemetry:
    """Telemetry for one manager. Off (a shared no-op span per call) unless an OpenTelemetry SDK is configured.

    Args:
        tracer_provider / meter_provider: providers to use instead of the global ones (tests, or an application that
            keeps its own); giving either turns telemetry on for it.
        capture_content: record prompts and answers; None: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`.
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None,
                 capture_content: bool | None = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        if capture_content is None:
            capture_content = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")
        self.capture_content = capture_content
        self._instruments: _Instruments | None = None
        self._decided = False

    @property
    def enabled(self) -> bool:
        """Whether calls are recorded (decides now if no call has yet)."""
        if not self._decided:
            self._decide()
        return self._instruments is not None

    def refresh(self) -> None:
        """Decide again at the next call (after OpenTelemetry was configured later than the first call)."""
        self._decided = False
        self._instruments = None

    def _decide(self) -> None:
        self._decided = True
        tracer_provider, meter_provider = self._tracer_provider, self._meter_provider
        if tracer_provider is None and meter_provider is None:
            try:
                from opentelemetry import metrics, trace
            except ImportError:
                return
            tracer_provider = trace.get_tracer_provider()
            meter_provider = metrics.get_meter_provider()
            if _is_api_default(tracer_provider, "opentelemetry.trace"):
                tracer_provider = None
            if _is_api_default(meter_provider, "opentelemetry.metrics"):
                meter_provider = None
            if tracer_provider is None and meter_provider is None:
                return
        self._instruments = _Instruments(tracer_provider, meter_provider, self.capture_content)

    def start_call(self, request: Any, model: str, backend: str, *, base_url: str | None = None,
                   stream: bool = False, activate: bool = False) -> CallSpan:
        """The span of one manager call (use it as a context manager).

        Args:
            request: the caller's `LLMRequest`.
            model: the model the first backend will be asked for.
            backend: the first backend's registry name.
            base_url: that backend's `LLMConfig.base_url` (for `server.address` and the provider name).
            stream: whether the call streams.
            activate: make the span current inside the `with` block, so that spans started there (an instrumented
                HTTP client) become its children. Not for a block that spans an async generator's `yield`.
        """
        if not self._decided:
            self._decide()
        inst = self._instruments
        if inst is None:
            return NOOP_SPAN
        return _ActiveSpan(inst, request, model, backend, base_url, stream, activate)
