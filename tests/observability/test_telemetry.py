"""OpenTelemetry GenAI spans and metrics, captured with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm.accounting.semconv import provider_name
from llm.accounting.span import NOOP_SPAN
from llm.accounting.telemetry import CAPTURE_CONTENT_ENV, LLMTelemetry
from llm.base import LLMRequest, LLMResponse, ToolCall
from llm.errors import LLMRateLimitError

SECRET_PROMPT = "the launch code is 0000"
SECRET_ANSWER = "noted: 0000"


@dataclass
class Otel:
    telemetry: LLMTelemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        if data is None:
            return []
        return [point for resource in data.resource_metrics for scope in resource.scope_metrics
                for metric in scope.metrics if metric.name == name for point in metric.data.data_points]


def make_otel(**options: Any) -> Otel:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = LLMTelemetry(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]),
                             **options)
    return Otel(telemetry, spans, reader, tracer_provider)


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = make_otel()
    yield made
    made.tracer_provider.shutdown()


def request(**fields: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": SECRET_PROMPT}], system_prompt="be terse", **fields)


def response(**fields: Any) -> LLMResponse:
    values: dict[str, Any] = {
        "content": SECRET_ANSWER, "model": "gpt-4o-2024-08-06", "backend_type": "openai",
        "usage": {"prompt_tokens": 16, "completion_tokens": 12, "total_tokens": 28, "cached_tokens": 8,
                  "reasoning_tokens": 2},
        "metadata": {"id": "chatcmpl-1"}, "finish_reason": "stop", **fields}
    return LLMResponse(**values)


def all_text(span: ReadableSpan) -> str:
    """Everything a span carries, as text: attributes, events, status."""
    parts = [repr(dict(span.attributes or {})), repr(span.status.description)]
    parts += [f"{event.name} {dict(event.attributes or {})!r}" for event in span.events]
    return " ".join(parts)


def test_one_span_per_call_with_the_genai_attributes(otel: Otel) -> None:
    with otel.telemetry.start_call(request(max_tokens=50, temperature=0.2, extra_params={"top_p": 0.9}), "gpt-4o",
                                   "openai", base_url="https://api.openai.com/v1") as span:
        span.finish(response())
    (recorded,) = otel.finished()
    assert recorded.name == "chat gpt-4o" and recorded.kind == trace.SpanKind.CLIENT
    assert dict(recorded.attributes or {}) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "server.address": "api.openai.com", "server.port": 443, "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 50, "gen_ai.request.temperature": 0.2, "gen_ai.request.top_p": 0.9,
        "scout_llm.backend": "openai", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 16, "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 8, "gen_ai.usage.reasoning.output_tokens": 2,
    }
    assert recorded.status.status_code == trace.StatusCode.UNSET


def test_metrics_token_usage_and_duration(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.finish(response())
    tokens = {point.attributes["gen_ai.token.type"]: point for point in otel.points("gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    assert (tokens["input"].sum, tokens["output"].sum) == (16, 12)
    assert dict(tokens["input"].attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.token.type": "input"}
    assert tokens["input"].explicit_bounds[:3] == (1, 4, 16)  # the semantic conventions' bucket advice
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and 0 <= duration.sum < 1 and "error.type" not in duration.attributes
    assert otel.points("gen_ai.client.operation.time_to_first_chunk") == []  # not a stream


def test_failure_sets_error_type_and_status_but_never_the_message(otel: Otel) -> None:
    with pytest.raises(LLMRateLimitError), otel.telemetry.start_call(request(), "gpt-4o", "openai"):
        raise LLMRateLimitError(f"rate limited; your prompt was {SECRET_PROMPT}", status_code=429)
    (recorded,) = otel.finished()
    assert recorded.attributes is not None
    assert recorded.attributes["error.type"] == "LLMRateLimitError"
    assert recorded.attributes["http.response.status_code"] == 429
    assert recorded.status.status_code == trace.StatusCode.ERROR
    assert SECRET_PROMPT not in all_text(recorded)
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "LLMRateLimitError"
    assert otel.points("gen_ai.client.token.usage") == []


def test_attempts_are_events_of_the_call_span(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.attempt("openai", "gpt-4o", "LLMServerError", 0.25, 503)
        span.attempt("claude", "claude-x", "skipped: circuit open", 0.0)
        span.attempt("gemini", "gemini-2.5-flash", "ok", 0.5)
        span.finish(response(backend_type="gemini", model="gemini-2.5-flash"))
    (recorded,) = otel.finished()
    events = [(event.name, dict(event.attributes or {})) for event in recorded.events]
    assert [name for name, _ in events] == ["scout_llm.attempt"] * 3
    assert events[0][1] == {"scout_llm.backend": "openai", "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": "gpt-4o", "scout_llm.attempt.outcome": "LLMServerError",
                            "scout_llm.attempt.duration": 0.25, "http.response.status_code": 503,
                            "error.type": "LLMServerError"}
    assert "error.type" not in events[1][1] and "error.type" not in events[2][1]
    assert events[2][1]["gen_ai.provider.name"] == "gcp.gemini"
    # a fallback served: the span names its provider
    assert recorded.attributes is not None and recorded.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert recorded.attributes["scout_llm.backend"] == "gemini"


def test_one_successful_attempt_adds_no_event_and_one_failed_attempt_does(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.attempt("openai", "gpt-4o", "ok", 0.1)
        span.finish(response())
    with pytest.raises(LLMRateLimitError), otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.attempt("openai", "gpt-4o", "LLMRateLimitError", 0.1, 429)
        raise LLMRateLimitError("slow down", status_code=429)
    answered, failed = otel.finished()
    assert list(answered.events) == []
    (event,) = failed.events
    assert event.attributes is not None and event.attributes["error.type"] == "LLMRateLimitError"


def test_stream_time_to_first_chunk_and_early_close(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai", stream=True) as span:
        span.first_chunk()
        span.finish(response())
    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    (recorded,) = otel.finished()
    assert recorded.attributes is not None and recorded.attributes["gen_ai.request.stream"] is True
    assert isinstance(recorded.attributes["gen_ai.response.time_to_first_chunk"], float)
    # the consumer stops reading: the span ends, without an error
    with pytest.raises(GeneratorExit), otel.telemetry.start_call(request(), "gpt-4o", "openai", stream=True):
        raise GeneratorExit
    early = otel.finished()[-1]
    assert early.end_time is not None and early.attributes is not None and "error.type" not in early.attributes
    assert early.status.status_code == trace.StatusCode.UNSET


def test_no_content_recorded_by_default(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.finish(response(tool_calls=[ToolCall("c1", "lookup", {"q": SECRET_PROMPT})]))
    (recorded,) = otel.finished()
    text = all_text(recorded)
    assert SECRET_PROMPT not in text and SECRET_ANSWER not in text and "be terse" not in text


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_content_recorded_when_opted_in(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "environment":
        monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
        made = make_otel()
    else:
        made = make_otel(capture_content=True)
    with made.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.finish(response())
    (recorded,) = made.finished()
    assert recorded.attributes is not None
    assert SECRET_PROMPT in str(recorded.attributes["gen_ai.input.messages"])
    assert "be terse" in str(recorded.attributes["gen_ai.system_instructions"])
    assert SECRET_ANSWER in str(recorded.attributes["gen_ai.output.messages"])


def test_activated_span_is_the_parent_of_spans_started_inside(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("test")
    with otel.telemetry.start_call(request(), "gpt-4o", "openai", activate=True) as span:
        with tracer.start_as_current_span("POST /v1/chat/completions"):
            pass
        span.finish(response())
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again
    child, parent = otel.finished()
    assert child.parent is not None and parent.context is not None
    assert child.parent.span_id == parent.context.span_id


def test_finish_twice_or_fail_after_finish_records_once(otel: Otel) -> None:
    with otel.telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.finish(response())
        span.finish(response())
        span.fail(RuntimeError("late"))
    assert len(otel.finished()) == 1
    assert otel.points("gen_ai.client.operation.duration")[0].count == 1


@pytest.mark.parametrize(("backend", "base_url", "name"), [
    ("openai", None, "openai"), ("claude", None, "anthropic"), ("gemini", None, "gcp.gemini"),
    ("deepseek", "https://api.deepseek.com/v1", "deepseek"), ("ollama", "http://localhost:11434", "ollama"),
    ("local", None, "llama_cpp"), ("openai", "https://api.groq.com/openai/v1", "groq"),
    ("openai", "https://myres.openai.azure.com/openai", "azure.ai.openai"),
    ("openai", "http://127.0.0.1:9/v1", "openai"),
    ("custom", None, "custom"),
])
def test_provider_names(backend: str, base_url: str | None, name: str) -> None:
    assert provider_name(backend, base_url) == name


# -- off: decided once, nothing recorded -----------------------------------------------------------------------------


def test_without_an_sdk_configured_every_call_gets_the_shared_noop_span() -> None:
    telemetry = LLMTelemetry()  # the global providers: the API's own proxies in this test process
    assert telemetry.start_call(request(), "gpt-4o", "openai") is NOOP_SPAN
    assert telemetry.enabled is False
    with telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.attempt("openai", "gpt-4o", "ok", 0.1)
        span.first_chunk()
        span.finish(response())


def test_without_opentelemetry_installed_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    telemetry = LLMTelemetry()
    assert telemetry.start_call(request(), "gpt-4o", "openai") is NOOP_SPAN


def test_decided_once_until_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = LLMTelemetry()
    assert telemetry.start_call(request(), "m", "openai") is NOOP_SPAN
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)  # "configured" after the first call
    assert telemetry.start_call(request(), "m", "openai") is NOOP_SPAN
    telemetry.refresh()
    with telemetry.start_call(request(), "m", "openai") as span:
        span.finish(response())
    assert [s.name for s in exporter.get_finished_spans()] == ["chat m"]


def test_a_sampled_out_span_gets_no_work_but_metrics_still_count() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = LLMTelemetry(tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]))
    with telemetry.start_call(request(), "gpt-4o", "openai") as span:
        span.attempt("openai", "gpt-4o", "LLMServerError", 0.1, 500)
        span.finish(response())
    assert list(spans.get_finished_spans()) == []
    made = Otel(telemetry, spans, reader, provider)
    assert len(made.points("gen_ai.client.token.usage")) == 2
