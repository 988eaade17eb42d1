"""Cost: equal to genai-prices' own computation from the vendor's body, None when unknown, computed when first read."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from genai_prices import Usage, calc_price, extract_usage

from llm.accounting import pricing
from llm.accounting.pricing import DeferredCost, cost_usd, defer_cost, price_source
from llm.accounting.usage import anthropic_usage, gemini_usage, openai_usage
from llm.base import LLMResponse
from tests.observability.recorded import body, json_file, sse_events


def theirs(data: dict[str, Any], provider: str, flavor: str = "default") -> float:
    """What genai-prices computes from the vendor's own body, with its own usage extraction."""
    return float(extract_usage(data, provider_id=provider, api_flavor=flavor).calc_price().total_price)


def _anthropic_stream_message(name: str) -> dict[str, Any]:
    """A streamed Anthropic message assembled as the vendor documents: message_start, then message_delta's usage."""
    events = sse_events(name)
    message = dict(next(e for e in events if e["type"] == "message_start")["message"])
    usage = anthropic_usage(message["usage"])
    for event in events:
        if event["type"] == "message_delta":
            usage = anthropic_usage(event["usage"], usage)
            message["usage"] = {**message["usage"], **event["usage"]}
    message["_ours"] = usage
    return message


# -- per vendor, whole answers and streams, from recordings ----------------------------------------------------------


def test_openai_generate_and_stream_recordings() -> None:
    data = body("openai/mirascope__test_call_openai_gpt_4o_completions_sync.yaml")
    ours = cost_usd("openai", data["model"], openai_usage(data["usage"]))
    assert ours is not None and ours > 0 and ours == theirs(data, "openai", "chat")
    events = sse_events("openai/extracted__mirascope__gpt_4o_completions_stream__0.sse")
    last = [e for e in events if e.get("usage")][-1]
    assert cost_usd("openai", last["model"], openai_usage(last["usage"])) == theirs(last, "openai", "chat")


def test_anthropic_generate_and_stream_recordings() -> None:
    data = body("anthropic/mirascope__test_call_anthropic_claude_sonnet_4_0_sync.yaml")
    ours = cost_usd("claude", data["model"], anthropic_usage(data["usage"]))
    assert ours is not None and ours > 0 and ours == theirs(data, "anthropic")
    message = _anthropic_stream_message("anthropic/extracted__llm_anthropic__test_stream_events_text__0.sse")
    assert cost_usd("claude", message["model"], message.pop("_ours")) == theirs(message, "anthropic")


def test_gemini_generate_and_stream_recordings() -> None:
    data = json_file("gemini/extracted__mirascope__gemini_2_5_flash_sync__0.json")
    ours = cost_usd("gemini", data["modelVersion"], gemini_usage(data["usageMetadata"]))
    assert ours is not None and ours > 0 and ours == theirs(data, "google")
    last = [e for e in sse_events("gemini/extracted__mirascope__gemini_2_5_flash_stream__0.sse")
            if e.get("usageMetadata")][-1]
    assert cost_usd("gemini", last["modelVersion"], gemini_usage(last["usageMetadata"])) == theirs(last, "google")


# -- cache and reasoning tokens priced as the vendor bills them ------------------------------------------------------

CACHED_BODIES = [
    ("openai", "openai", "chat", openai_usage, {
        "model": "gpt-4o-2024-08-06", "usage": {
            "prompt_tokens": 5000, "completion_tokens": 800, "total_tokens": 5800,
            "prompt_tokens_details": {"cached_tokens": 4096},
            "completion_tokens_details": {"reasoning_tokens": 300}}}),
    ("deepseek", "deepseek", "chat", openai_usage, {
        "model": "deepseek-chat", "usage": {
            "prompt_tokens": 5000, "completion_tokens": 800, "total_tokens": 5800,
            "prompt_tokens_details": {"cached_tokens": 4096}}}),
    ("claude", "anthropic", "default", anthropic_usage, {
        "model": "claude-sonnet-4-20250514", "usage": {
            "input_tokens": 50, "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 1200,
            "output_tokens": 700}}),
    ("gemini", "google", "default", gemini_usage, {
        "modelVersion": "gemini-2.5-flash", "usageMetadata": {
            "promptTokenCount": 6000, "cachedContentTokenCount": 4000, "candidatesTokenCount": 500,
            "thoughtsTokenCount": 900, "totalTokenCount": 7400}}),
]


@pytest.mark.parametrize(("backend", "provider", "flavor", "convert", "data"), CACHED_BODIES,
                         ids=[row[0] for row in CACHED_BODIES])
def test_cached_and_reasoning_tokens_priced_like_genai_prices(
        backend: str, provider: str, flavor: str, convert: Callable[[Any], Any], data: dict[str, Any]) -> None:
    usage = convert(data.get("usage") or data.get("usageMetadata"))
    assert usage.get("cached_tokens")
    ours = cost_usd(backend, data.get("model") or data["modelVersion"], usage)
    assert ours == theirs(data, provider, flavor)
    # and a cache read is cheaper than the same tokens uncached
    uncached = {key: value for key, value in usage.items() if key != "cached_tokens"}
    assert ours is not None and ours < cost_usd(backend, data.get("model") or data["modelVersion"], uncached)


# -- unknown is None, never zero -------------------------------------------------------------------------------------

USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


@pytest.mark.parametrize(("backend", "model", "usage", "base_url"), [
    ("openai", "my-private-finetune-xyz", USAGE, None),  # a model genai-prices does not list
    ("ollama", "llama3", USAGE, "http://localhost:11434"),  # local compute
    ("local", "SmolLM2-360M-Instruct", USAGE, None),
    ("openai", "gpt-4o", USAGE, "http://127.0.0.1:8000/v1"),  # a self-hosted OpenAI-compatible server
    ("custom", "gpt-4o", USAGE, None),  # a backend we know nothing about
    ("openai", "gpt-4o", None, None),  # the vendor reported no usage
    ("openai", "gpt-4o", {"completion_tokens": 20}, None),  # half the usage is unknown
    ("openai", "", USAGE, None),
])
def test_unknown_price_is_none(backend: str, model: str, usage: Any, base_url: str | None) -> None:
    assert cost_usd(backend, model, usage, base_url) is None


def test_openai_compatible_endpoints_priced_by_their_provider() -> None:
    expected = float(calc_price(Usage(input_tokens=100, output_tokens=20), "deepseek-chat",
                                provider_id="deepseek").total_price)
    assert cost_usd("deepseek", "deepseek-chat", USAGE) == expected
    assert cost_usd("deepseek", "deepseek-chat", USAGE, "https://api.deepseek.com/v1") == expected
    assert cost_usd("openai", "deepseek-chat", USAGE, "https://api.deepseek.com/v1") == expected
    # a gateway in front of a known vendor: name the price list
    assert cost_usd("openai", "deepseek-chat", USAGE, "https://gateway.internal/v1", provider="deepseek") == expected
    assert price_source("openai", "https://api.groq.com/openai/v1") == ("url", "https://api.groq.com/openai/v1")
    assert price_source("ollama", "https://api.openai.com/v1") is None


@pytest.fixture
def no_genai_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pricing, "_state", {})
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes `import genai_prices` raise ImportError
    yield


def test_without_genai_prices_every_cost_is_unknown_and_said_once(
        no_genai_prices: None, caplog: pytest.LogCaptureFixture) -> None:
    assert cost_usd("openai", "gpt-4o", USAGE) is None
    assert cost_usd("claude", "claude-sonnet-4-20250514", USAGE) is None
    warnings = [r for r in caplog.records if "genai-prices is not installed" in r.getMessage()]
    assert len(warnings) == 1


# -- computed when first read (LLMResponse.cost_usd) ------------------------------------------------------------------


def _response(model: str = "gpt-4o-2024-08-06") -> LLMResponse:
    return LLMResponse(content="hi", model=model, backend_type="openai", usage=dict(USAGE), metadata={})


def test_deferred_cost_is_computed_once_on_first_read(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = pricing.cost_usd

    def counting(*args: Any, **kwargs: Any) -> float | None:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(pricing, "cost_usd", counting)
    response = _response()
    assert response.cost_usd is None  # nothing attached yet
    deferred = defer_cost(response, "openai")
    assert calls == []  # attaching prices nothing
    expected = float(calc_price(Usage(input_tokens=100, output_tokens=20), "gpt-4o-2024-08-06",
                                provider_id="openai").total_price)
    assert response.cost_usd == expected and response.cost_usd == expected and deferred.value == expected
    assert calls == ["gpt-4o-2024-08-06"]


def test_cost_field_stores_plain_values_and_unknown() -> None:
    response = _response("my-private-finetune-xyz")
    defer_cost(response, "openai")
    assert response.cost_usd is None
    response.cost_usd = 0.5
    assert response.cost_usd == 0.5
    assert isinstance(DeferredCost("ollama", "llama3", USAGE).value, type(None))
