"""`LLMTelemetry`: whether a manager's calls are recorded with OpenTelemetry (decided once, at the first call), and
the span each call gets (`llm.accounting.span`). Behaviour, attributes and the cost when off: README "Cost, budgets
and telemetry"."""

from __future__ import annotations

import os
from typing import Any, Final

from llm.accounting.span import NOOP_SPAN, CallSpan, _ActiveSpan, _Instruments, telemetry_failed

__all__ = ["CAPTURE_CONTENT_ENV", "LLMTelemetry"]

CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


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
        try:
            self._instruments = _Instruments(tracer_provider, meter_provider, self.capture_content)
        except Exception as exc:  # a provider that cannot make a tracer or an instrument: calls go on unrecorded
            telemetry_failed(exc, "creating the tracer and instruments")

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
        try:
            return _ActiveSpan(inst, request, model, backend, base_url, stream, activate)
        except Exception as exc:  # a span processor's on_start raised: this call goes unrecorded, not failed
            telemetry_failed(exc, "starting the span")
            return NOOP_SPAN
