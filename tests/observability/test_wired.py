"""Issue 15 end to end, through the real `LLMManager` and the real adapters on fake vendor servers: the cost of each
answer equals genai-prices' own computation from the vendor's recorded body (generate and stream, per vendor), None
when the price is unknown; usage details reach the response; a spent budget stops the next call with no request sent;
one OpenTelemetry span per call with its attempts on failover and no content by default; `usage_summary()`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from genai_prices import Usage, calc_price

import llm
from llm.base import LLMResponse, ResponseDone, TextDelta
from llm.config import ScoutConfig
from llm.errors import LLMBudgetExceededError, LLMConfigError, LLMServerError
from llm.manager import LLMManager
from tests.fakes.openai_fake import error_reply
from tests.fakes.recordings import interaction_body
from tests.fakes.server import FakeServer
from tests.manager.helpers import VENDOR, gen_count, managed, request
from tests.observability.recorded import body, sse_events
from tests.observability.test_pricing import _anthropic_stream_message, theirs
from tests.observability.test_telemetry import SECRET_PROMPT, Otel, make_otel

#: The fake servers listen on 127.0.0.1, which genai-prices cannot match to a vendor: name each price list, as a user
#: does for a gateway in front of a known vendor.
PROVIDERS = {"openai": "openai", "claude": "anthropic", "gemini": "google", "deepseek": "deepseek"}


def _last_with(events: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return [event for event in events if event.get(key)][-1]


def _gemini_stream_last() -> dict[str, Any]:
    text = interaction_body("gemini/mirascope__test_call_google_gemini_2_5_flash_stream.yaml").decode()
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return _last_with(events, "usageMetadata")


def _expected(kind: str, stream: bool) -> float:
    """genai-prices' own price of the recording the fake replays, from the vendor's body with its own extraction."""
    if kind == "openai":
        data = (_last_with(sse_events("openai/extracted__mirascope__gpt_4o_completions_stream__0.sse"), "usage")
                if stream else body("openai/mirascope__test_call_openai_gpt_4o_completions_sync.yaml"))
        return theirs(data, "openai", "chat")
    if kind == "claude":
        if stream:
            message = _anthropic_stream_message("anthropic/extracted__llm_anthropic__test_stream_events_text__0.sse")
            message.pop("_ours")
            return theirs(message, "anthropic")
        return theirs(body("anthropic/mirascope__test_call_anthropic_claude_sonnet_4_0_sync.yaml"), "anthropic")
    data = _gemini_stream_last() if stream else body("gemini/mirascope__test_call_google_gemini_2_5_flash_sync.yaml")
    return theirs(data, "google")


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = make_otel()
    yield made
    made.tracer_provider.shutdown()


@asynccontextmanager
async def wired(*kinds: str, **policy: Any) -> AsyncIterator[tuple[LLMManager, list[FakeServer]]]:
    policy.setdefault("price_providers", PROVIDERS)
    async with managed(*kinds, **policy) as (manager, servers):
        yield manager, servers


async def answer(manager: LLMManager, stream: bool, **fields: Any) -> LLMResponse:
    if not stream:
        return await manager.generate(request(**fields))
    final = None
    async for event in manager.stream(request(**fields)):
        if isinstance(event, ResponseDone):
            final = event.response
    assert final is not None
    return final


STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])


# -- cost ------------------------------------------------------------------------------------------------------------


@STREAM
@pytest.mark.parametrize("kind", ["openai", "claude", "gemini"])
async def test_cost_equals_genai_prices_for_the_recorded_answer(kind: str, stream: bool) -> None:
    vendor = VENDOR[kind]
    reply, expected = vendor.text_stream if stream else vendor.text_sync
    async with wired(kind) as (manager, (server,)):
        server.enqueue(reply)
        response = await answer(manager, stream)
        summary = manager.usage_summary()
    assert gen_count(kind, server) == 1
    assert response.usage == expected.usage and response.model == expected.model
    cost = _expected(kind, stream)
    assert cost > 0 and response.cost_usd == cost
    entry = summary["by_backend"][kind][response.model]
    assert entry["calls"] == 1 and entry["cost_usd"] == cost and entry["unknown_cost_calls"] == 0
    assert entry["total_tokens"] == expected.usage["total_tokens"]


@STREAM
async def test_deepseek_is_priced_by_its_provider(stream: bool) -> None:
    async with wired("deepseek") as (manager, (server,)):
        response = await answer(manager, stream)
    assert gen_count("deepseek", server) == 1 and response.model == "deepseek-chat"
    usage = Usage(input_tokens=response.usage["prompt_tokens"], output_tokens=response.usage["completion_tokens"])
    cost = float(calc_price(usage, "deepseek-chat", provider_id="deepseek").total_price)
    assert cost > 0 and response.cost_usd == cost


@STREAM
async def test_unknown_price_is_none_never_zero(stream: bool) -> None:
    async with wired("openai", "ollama") as (manager, _):
        private = await answer(manager, stream, extra_params={"model_name_override": "ft:acme-private-7"})
        manager.set_default_backend("ollama")
        local = await answer(manager, stream)
        summary = manager.usage_summary()
    assert private.model == "ft:acme-private-7" and private.cost_usd is None
    assert local.backend_type == "ollama" and local.cost_usd is None
    assert summary["total"]["unknown_cost_calls"] == 2 and summary["total"]["cost_usd"] == 0.0


async def test_an_endpoint_genai_prices_does_not_know_has_no_price() -> None:
    async with managed("openai") as (manager, (server,)):  # 127.0.0.1 and no price list named
        response = await manager.generate(request())
    assert server.count("/chat") == 1 and response.usage["total_tokens"] > 0
    assert response.cost_usd is None


# -- usage details through the adapters ------------------------------------------------------------------------------


@STREAM
async def test_usage_details_from_recorded_bodies_reach_the_response(stream: bool) -> None:
    reply, _ = VENDOR["gemini"].text_stream if stream else VENDOR["gemini"].text_sync
    async with wired("gemini") as (manager, (server,)):
        server.enqueue(reply)
        response = await answer(manager, stream)
    thoughts = (_gemini_stream_last() if stream else
                body("gemini/mirascope__test_call_google_gemini_2_5_flash_sync.yaml"))["usageMetadata"]
    assert response.usage["reasoning_tokens"] == thoughts["thoughtsTokenCount"] > 0
    assert response.usage["completion_tokens"] == thoughts["candidatesTokenCount"] + thoughts["thoughtsTokenCount"]


# -- budget ----------------------------------------------------------------------------------------------------------


async def test_a_spent_budget_stops_every_kind_of_call_with_no_request(otel: Otel) -> None:
    async with wired("openai", budget_usd=1e-9, telemetry=otel.telemetry) as (manager, (server,)):
        first = await manager.generate(request())
        assert first.cost_usd is not None and first.cost_usd > 1e-9
        with pytest.raises(LLMBudgetExceededError) as caught:
            await manager.generate(request())
        with pytest.raises(LLMBudgetExceededError):
            [event async for event in manager.stream(request())]
        with pytest.raises(LLMBudgetExceededError):
            [text async for text in manager.stream_generate(request())]
        summary = manager.usage_summary()
    assert server.count("/chat") == 1
    assert isinstance(caught.value, llm.LLMError) and caught.value.spent_usd == first.cost_usd
    assert "no request was sent" in str(caught.value)
    assert summary["budget_usd"] == 1e-9 and summary["remaining_usd"] == 0.0
    assert len(otel.finished()) == 1  # a refused call starts no span


async def test_budget_from_the_environment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_LLM_BUDGET_USD", "0")
    config = ScoutConfig.from_environment(None)
    assert config.llm.budget_usd == 0.0
    async with managed("openai", config=config, price_providers=PROVIDERS) as (manager, (server,)):
        with pytest.raises(LLMBudgetExceededError):
            await manager.generate(request())
    assert server.count("/chat") == 0


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "lots"])
def test_an_invalid_budget_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SCOUT_LLM_BUDGET_USD", value)
    with pytest.raises(LLMConfigError, match="SCOUT_LLM_BUDGET_USD"):
        ScoutConfig.from_environment(None)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_an_invalid_manager_budget_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="budget_usd"):
        LLMManager(budget_usd=value)


# -- telemetry -------------------------------------------------------------------------------------------------------


@STREAM
async def test_one_span_per_call_with_metrics_and_no_content(otel: Otel, stream: bool) -> None:
    async with wired("openai", telemetry=otel.telemetry) as (manager, (server,)):
        response = await answer(manager, stream, max_tokens=50, temperature=0.5)
    assert server.count("/chat") == 1
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4.1-mini"
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4.1-mini" and attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.temperature"] == 0.5 and attributes["gen_ai.request.stream"] is stream
    assert attributes["gen_ai.response.model"] == response.model
    assert attributes["gen_ai.usage.input_tokens"] == response.usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == response.usage["completion_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",) and "error.type" not in attributes
    assert list(span.events) == []  # answered by its first attempt
    text = json.dumps(attributes)
    assert SECRET_PROMPT not in text and response.content not in text and "gen_ai.input.messages" not in attributes
    (duration,) = otel.points("gen_ai.client.operation.duration")
    tokens = otel.points("gen_ai.client.token.usage")
    assert duration.count == 1 and sorted(point.sum for point in tokens) == sorted(
        [response.usage["prompt_tokens"], response.usage["completion_tokens"]])
    assert len(otel.points("gen_ai.client.operation.time_to_first_chunk")) == (1 if stream else 0)


@STREAM
async def test_failover_attempts_are_events_of_the_one_span(otel: Otel, stream: bool) -> None:
    async with wired("openai", "deepseek", retry_attempts=2, telemetry=otel.telemetry) as (manager, servers):
        primary, secondary = servers
        primary.enqueue(error_reply(500, {}), error_reply(500, {}))
        response = await answer(manager, stream)
        summary = manager.usage_summary()
    assert (primary.count("/chat"), secondary.count("/chat")) == (2, 1) and response.backend_type == "deepseek"
    (span,) = otel.finished()
    outcomes = [(event.attributes["scout_llm.backend"], event.attributes["scout_llm.attempt.outcome"])
                for event in span.events if event.attributes]
    assert outcomes == [("openai", "LLMServerError"), ("openai", "LLMServerError"), ("deepseek", "ok")]
    assert span.attributes is not None and span.attributes["gen_ai.provider.name"] == "deepseek"
    assert summary["by_backend"]["openai"]["gpt-4.1-mini"]["errors"] == 2
    assert summary["by_backend"]["deepseek"]["deepseek-chat"]["calls"] == 1


async def test_a_failed_call_is_an_error_span_and_counted(otel: Otel) -> None:
    async with wired("openai", retry_attempts=1, telemetry=otel.telemetry) as (manager, (server,)):
        server.enqueue(error_reply(500, {}))
        with pytest.raises(LLMServerError):
            await manager.generate(request())
        summary = manager.usage_summary()
    (span,) = otel.finished()
    assert span.attributes is not None and span.attributes["error.type"] == "LLMServerError"
    assert span.attributes["http.response.status_code"] == 500
    assert summary["total"] == {"calls": 0, "errors": 1, "cost_usd": 0.0, "unknown_cost_calls": 0}


async def test_content_is_recorded_only_when_asked() -> None:
    otel = make_otel(capture_content=True)
    async with wired("openai", telemetry=otel.telemetry) as (manager, _):
        response = await manager.generate(request(SECRET_PROMPT))
    (span,) = otel.finished()
    assert span.attributes is not None
    assert SECRET_PROMPT in str(span.attributes["gen_ai.input.messages"])
    assert response.content in str(span.attributes["gen_ai.output.messages"])
    otel.tracer_provider.shutdown()


async def test_stream_generate_text_is_unchanged_by_the_wiring(otel: Otel) -> None:
    async with wired("openai", telemetry=otel.telemetry) as (manager, _):
        texts = [text async for text in manager.stream_generate(request("hello there"))]
        events = [event async for event in manager.stream(request("hello there"))]
    assert "".join(texts) == "".join(event.text for event in events if isinstance(event, TextDelta))
    assert len(otel.finished()) == 2
