"""What telemetry, pricing and the usage ledger add to one manager call, in microseconds (reported, not asserted).

    python -m bench.telemetry_bench [--calls 20000] [--rounds 5]

Each case runs the per-call work of its seam `--calls` times, `--rounds` times, and prints the median per call:

* telemetry off: `start_call` + one `attempt` + `finish` when no OpenTelemetry SDK is configured (the shared no-op
  span), target <= 5 us;
* telemetry on: the same with the OpenTelemetry SDK (a TracerProvider with a BatchSpanProcessor to an exporter that
  drops, a MeterProvider with an in-memory reader), target <= 50 us;
* cost: `defer_cost` (what a call pays), the first read of `cost_usd` (genai-prices' computation), the import of
  genai-prices (once per process);
* ledger: `record_response` + `record_attempts` of a successful call;
* the whole wiring a manager call pays with telemetry off and no budget: budget check, no-op span, `defer_cost`,
  `record_response` (a ledger never read folds its pending costs instead of pricing them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from llm.accounting.ledger import UsageLedger
from llm.accounting.pricing import cost_usd, defer_cost, load_prices
from llm.accounting.telemetry import LLMTelemetry
from llm.base import LLMRequest, LLMResponse

REQUEST = LLMRequest(messages=[{"role": "user", "content": "Hello"}], max_tokens=64, temperature=0.2)
USAGE = {"prompt_tokens": 16, "completion_tokens": 12, "total_tokens": 28, "cached_tokens": 0}
ATTEMPTS = [{"backend": "openai", "model": "gpt-4o", "outcome": "ok", "elapsed": 0.2, "status_code": None}]


def response() -> LLMResponse:
    return LLMResponse(content="Hi!", model="gpt-4o-2024-08-06", backend_type="openai", usage=dict(USAGE),
                       metadata={"id": "chatcmpl-1", "attempts": ATTEMPTS}, finish_reason="stop")


def per_call_us(work: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over rounds of the time per call, in microseconds, minus an empty loop's."""
    def timed(body: Callable[[], Any]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            body()
        return (time.perf_counter() - start) / calls * 1e6

    def empty() -> None:
        return None

    return statistics.median(timed(work) - timed(empty) for _ in range(rounds))


def telemetry_call(telemetry: LLMTelemetry, answer: LLMResponse) -> Callable[[], None]:
    def call() -> None:
        with telemetry.start_call(REQUEST, "gpt-4o", "openai", base_url="https://api.openai.com/v1") as span:
            span.attempt("openai", "gpt-4o", "ok", 0.2)
            span.finish(answer)
    return call


def sdk_telemetry() -> tuple[LLMTelemetry, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = LLMTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    return telemetry, shutdown


class _StubSpan:
    """An SDK span that does nothing, with plain methods (a `__getattr__` stub would bill its own lookups to us)."""

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Any) -> None:
        return None

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        return None

    def set_status(self, status: Any) -> None:
        return None

    def end(self) -> None:
        return None


class _StubInstrument:
    def record(self, value: Any, attributes: Any = None) -> None:
        return None


def stub_telemetry() -> LLMTelemetry:
    """Telemetry on, with the SDK's tracer and instruments replaced by no-op objects: isolates our own code's cost."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    telemetry = LLMTelemetry(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    assert telemetry.enabled
    inst = telemetry._instruments
    assert inst is not None
    span, instrument = _StubSpan(), _StubInstrument()

    class Tracer:
        def start_span(self, name: str, kind: Any = None, attributes: Any = None) -> _StubSpan:
            return span

    inst.tracer, inst.duration, inst.tokens, inst.ttfc = Tracer(), instrument, instrument, instrument
    return telemetry


def sdk_floor(telemetry: LLMTelemetry) -> Callable[[], None]:
    """The least the SDK does for a call: a span with no attribute, three histogram records with no attribute."""
    assert telemetry.enabled
    inst = telemetry._instruments
    assert inst is not None and inst.tracer is not None and inst.duration is not None and inst.tokens is not None
    tracer, duration, tokens = inst.tracer, inst.duration, inst.tokens

    def call() -> None:
        tracer.start_span("chat").end()
        duration.record(0.1)
        tokens.record(16)
        tokens.record(12)
    return call


def genai_prices_import_ms() -> float:
    code = "import time; t = time.perf_counter(); import genai_prices; print((time.perf_counter() - t) * 1e3)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    calls, rounds = args.calls, args.rounds
    answer = response()
    rows: list[tuple[str, float, str]] = []

    off = LLMTelemetry()
    assert not off.enabled, "an OpenTelemetry SDK is configured globally: the 'off' case would not be off"
    rows.append(("telemetry off (no SDK configured)", per_call_us(telemetry_call(off, answer), calls, rounds),
                 "<= 5 us"))
    on, shutdown = sdk_telemetry()
    rows.append(("telemetry on (OpenTelemetry SDK, spans + metrics)",
                 per_call_us(telemetry_call(on, answer), calls, rounds), "<= 50 us"))
    rows.append(("  of which the SDK's floor (bare span + 3 histogram records)",
                 per_call_us(sdk_floor(on), calls, rounds), "-"))
    shutdown()
    rows.append(("  of which our code (SDK stubbed out)",
                 per_call_us(telemetry_call(stub_telemetry(), answer), calls, rounds), "-"))

    load_prices()
    rows.append(("cost: defer_cost (paid by every call)",
                 per_call_us(lambda: defer_cost(answer, "openai"), calls, rounds), "-"))
    priced = max(calls // 20, 100)
    rows.append(("cost: first read of cost_usd (genai-prices)",
                 per_call_us(lambda: cost_usd("openai", answer.model, answer.usage), priced, rounds), "-"))
    ledger = UsageLedger()

    def record() -> None:
        ledger.record_response(answer, 0.001)
        ledger.record_attempts(ATTEMPTS)
    rows.append(("ledger: record a successful call", per_call_us(record, calls, rounds), "-"))

    wired = UsageLedger()

    def off_call() -> None:  # what the manager adds to a call with telemetry off and no budget (llm/manager.py)
        wired.check_budget()
        with off.start_call(REQUEST, "gpt-4o", "openai") as span:
            span.attempt("openai", "gpt-4o", "ok", 0.2)
            wired.record_response(answer, defer_cost(answer, "openai"))
            span.finish(answer)
    rows.append(("manager wiring, telemetry off, no budget (budget check, span, cost, ledger)",
                 per_call_us(off_call, calls, rounds), "<= 5 us"))

    print(f"Python {sys.version.split()[0]}, {calls} calls x {rounds} rounds (median per call)\n")
    print("| case | added per call (us) | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value:.2f} | {target} |")
    print(f"| import genai_prices (once per process, on the first price) | {genai_prices_import_ms():.0f} ms | - |")


if __name__ == "__main__":
    main()
