"""The seams applied around a real `LLMManager` (tests/observability/observed.py) with real adapters on fake vendor
servers: one span per call with the attempts of a failover, cost equal to genai-prices for generate and stream, and a
spent budget that stops the next call before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from genai_prices import Usage, calc_price

from llm.base import ResponseDone, TextDelta
from llm.ledger import LLMBudgetExceededError, UsageLedger
from llm.manager import LLMManager
from tests.fakes.openai_fake import error_reply
from tests.fakes.server import FakeServer
from tests.manager.helpers import managed, request
from tests.observability.observed import ObservedManager
from tests.observability.test_telemetry import Otel, make_otel


@pytest.fixture
def otel() -> Otel:
    return make_otel()


def expected_cost(model: str, usage: dict[str, int]) -> float:
    price = calc_price(Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]), model,
                       provider_id="openai")
    return float(price.total_price)


@asynccontextmanager
async def observed(otel: Otel, *kinds: str, budget: float | None = None,
                   **policy: object) -> AsyncIterator[tuple[ObservedManager, list[FakeServer]]]:
    async with managed(*kinds, **policy) as (manager, servers):
        assert isinstance(manager, LLMManager)
        yield ObservedManager(manager, otel.telemetry, UsageLedger(budget), price_provider="openai"), servers


async def test_generate_one_span_cost_and_ledger(otel: Otel) -> None:
    async with observed(otel, "openai") as (llm, (server,)):
        response, deferred = await llm.generate(request("hello there"))
    assert server.count("/chat") == 1
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4.1-mini"
    assert attributes["gen_ai.usage.input_tokens"] == response.usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == response.usage["completion_tokens"]
    assert attributes["server.address"] == "127.0.0.1" and attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert list(span.events) == []  # answered by its first attempt: the span is that attempt
    cost = expected_cost("gpt-4.1-mini", response.usage)
    assert cost > 0 and deferred.value == cost
    assert llm.ledger.summary()["by_backend"]["openai"]["gpt-4.1-mini"]["cost_usd"] == cost


async def test_stream_one_span_first_chunk_and_cost(otel: Otel) -> None:
    async with observed(otel, "openai") as (llm, (server,)):
        events = [event async for event in llm.stream(request("stream me please"))]
    assert server.count("/chat") == 1
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], ResponseDone)
    final = events[-1].response
    (span,) = otel.finished()
    assert span.attributes is not None and span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == final.usage["completion_tokens"] > 0
    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    assert llm.ledger.summary()["total"]["cost_usd"] == expected_cost("gpt-4.1-mini", final.usage)


async def test_failover_attempts_visible_on_one_span(otel: Otel) -> None:
    async with observed(otel, "openai", "deepseek", retry_attempts=2) as (llm, (primary, secondary)):
        primary.enqueue(error_reply(500, {}), error_reply(500, {}))
        response, _ = await llm.generate(request())
    assert (primary.count("/chat"), secondary.count("/chat")) == (2, 1)
    assert response.backend_type == "deepseek"
    (span,) = otel.finished()
    outcomes = [(e.attributes["scout_llm.backend"], e.attributes["scout_llm.attempt.outcome"])
                for e in span.events if e.attributes]
    assert outcomes == [("openai", "LLMServerError"), ("openai", "LLMServerError"), ("deepseek", "ok")]
    assert span.attributes is not None and span.attributes["gen_ai.provider.name"] == "deepseek"
    by_backend = llm.ledger.summary()["by_backend"]
    assert by_backend["openai"]["gpt-4.1-mini"]["errors"] == 2 and by_backend["deepseek"]["deepseek-chat"]["calls"] == 1


async def test_spent_budget_stops_the_next_call_with_no_request(otel: Otel) -> None:
    async with observed(otel, "openai", budget=1e-9) as (llm, (server,)):
        await llm.generate(request())
        with pytest.raises(LLMBudgetExceededError) as caught:
            await llm.generate(request())
        with pytest.raises(LLMBudgetExceededError):
            [event async for event in llm.stream(request())]
        assert server.count("/chat") == 1
    assert caught.value.spent_usd > caught.value.budget_usd
    assert len(otel.finished()) == 1  # a refused call starts no span
