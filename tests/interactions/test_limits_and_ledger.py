"""Limits and accounting where they meet the call path: rate-limit tokens on every exit of an attempt, the
ledger and the budget against what the vendor billed, a registration whose limits cannot be attached, and limits that
must limit.

Every backend is a real OpenAI adapter on the OpenAI SDK against the fake OpenAI server on 127.0.0.1; each request
the fake saw is a request the vendor would have billed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from llm.config import APIConfig, LLMSettings, ScoutConfig
from llm.errors import (
    LLMBudgetExceededError,
    LLMConfigError,
    LLMError,
    LLMLocalRateLimitError,
    LLMStreamError,
    LLMStructuredOutputError,
    LLMTimeoutError,
)
from llm.manager import LLMManager, initialize_llm_backends
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.server import Delay, FakeServer, Reply, StreamReply, sse
from tests.manager.helpers import backend_for, fake_for, gen_count, managed, request

# -- the internals these tests read, each in one place -----------------------------------------------------------------


async def _tokens_left(manager: LLMManager, name: str) -> int | None:
    """The TPM capacity the backend's limiter has left in its window right now (in-flight estimates count)."""
    limiter = manager.rate_limiter
    assert limiter is not None
    return (await limiter.status(name)).tokens_left


# -- replies -----------------------------------------------------------------------------------------------------------

BASE = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-mini"}
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def text_frames(pieces: list[str]) -> list[str]:
    return sse({**BASE, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
               for piece in pieces)


def long_stream(pieces: int = 40, delay: float = 0.05) -> StreamReply:
    """A healthy stream, one piece every `delay` seconds, then the finish chunk, usage and [DONE]."""
    end = sse([{**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {**BASE, "choices": [], "usage": USAGE}])
    return StreamReply([*text_frames([f"w{i} " for i in range(pieces)]), *end, "data: [DONE]\n\n"], delay=delay)


def dropped_stream() -> StreamReply:
    """Some text, then the connection drops: the vendor billed it, the stream failed after it began."""
    return StreamReply(text_frames(["half ", "an ", "answer"]), delay=0.01, then="drop")


def completion(text: str) -> Reply:
    return Reply(body={"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4.1-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}], "usage": USAGE})


async def consume_stream(manager: LLMManager, how: str) -> None:
    """Run one stream that ends `how`: "failed" (the connection drops after some text) or "closed" (the caller
    stops reading after the first piece)."""
    stream = manager.stream_generate(request(max_tokens=4000), fallback=False)
    if how == "failed":
        with pytest.raises(LLMStreamError):
            async for _ in stream:
                pass
        return
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break


def openai_settings(server: FakeServer, **llm: Any) -> ScoutConfig:
    """Settings that configure OpenAI (on `server`) and nothing else."""
    return ScoutConfig(api=APIConfig(openai_api_key=OPENAI_KEY, openai_base_url=server.url + "/v1"),
                       llm=LLMSettings(ollama_enabled=False, local_enabled=False, timeout=5, **llm))


def total(manager: LLMManager) -> dict[str, Any]:
    summary: dict[str, Any] = manager.usage_summary()["total"]
    return summary


# -- rate-limit tokens come back on every exit of an attempt -----------------------------------------------------------

LIMITED: dict[str, Any] = {"rate_limits": {"openai": (None, 10_000)}, "retry_attempts": 1}


async def test_a_timed_out_attempt_gives_its_rate_limit_tokens_back() -> None:
    async with managed("openai", attempt_timeout=0.2, **LIMITED) as (manager, [server]):
        server.enqueue(Delay(1.0), Delay(1.0))
        for _ in range(2):
            with pytest.raises(LLMTimeoutError):
                await manager.generate(request(max_tokens=4000), fallback=False)
        assert await _tokens_left(manager, "openai") == 10_000
        response = await manager.generate(request(max_tokens=4000), fallback=False)
        assert response.content and gen_count("openai", server) == 3


@pytest.mark.parametrize("how", ["failed", "closed"])
async def test_a_stream_that_fails_or_is_closed_early_gives_its_rate_limit_tokens_back(how: str) -> None:
    async with managed("openai", **LIMITED) as (manager, [server]):
        for _ in range(2):
            server.enqueue(dropped_stream() if how == "failed" else long_stream())
            await consume_stream(manager, how)
        assert gen_count("openai", server) == 2
        left = await _tokens_left(manager, "openai")
        assert left is not None and left > 10_000 - 4_000, f"{10_000 - (left or 0)} tokens still held"
        response = await manager.generate(request(max_tokens=4000), fallback=False)
        assert response.content and gen_count("openai", server) == 3


# -- the ledger's calls are the vendor's billed requests ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["failed", "closed"])
async def test_a_stream_that_fails_or_is_closed_early_is_in_the_ledger(how: str) -> None:
    async with managed("openai") as (manager, [server]):
        server.enqueue(dropped_stream() if how == "failed" else long_stream())
        await consume_stream(manager, how)
        assert gen_count("openai", server) == 1
        assert total(manager)["calls"] == 1


async def test_a_structured_answer_invalid_after_its_repair_records_both_billed_requests() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    async with managed("openai", price_providers={"openai": "openai"}) as (manager, [server]):
        server.enqueue(completion('{"n": "many"}'), completion('{"n": "still many"}'))
        with pytest.raises(LLMStructuredOutputError):
            await manager.generate(request(max_tokens=50, response_format=response_format), fallback=False)
        assert gen_count("openai", server) == 2
        summary = total(manager)
        assert summary["calls"] == 2
        assert summary["prompt_tokens"] == 20 and summary["completion_tokens"] == 10
        assert manager.usage_summary()["spent_usd"] > 0


# -- a registration whose limits cannot be attached registers nothing --------------------------------------------------


async def test_a_registration_whose_limits_fail_leaves_no_backend_behind() -> None:
    async with fake_for("openai") as server:
        manager = LLMManager(redis_url="redis://127.0.0.1:99999", timeout=5.0)  # a port that cannot be
        try:
            with contextlib.suppress(LLMConfigError):  # refusing it (False) or saying why (the error): either
                assert not await manager.register_backend(backend_for("openai", server))
            assert manager.get_available_backends() == []
            assert manager.get_default_backend() is None
            with pytest.raises(LLMError, match="No LLM backends available"):
                await manager.generate(request())
            assert gen_count("openai", server) == 0
        finally:
            await manager.cleanup()


async def test_initialize_llm_backends_does_not_raise_when_limits_cannot_be_attached() -> None:
    async with fake_for("openai") as server:
        manager = LLMManager(openai_settings(server, redis_url="redis://127.0.0.1:99999"))
        try:
            await initialize_llm_backends(manager)  # documented: never raises for a backend's failure
            assert manager.get_available_backends() == []
            assert "openai" in manager.unavailable_backends
        finally:
            await manager.cleanup()


# -- limits that limit -------------------------------------------------------------------------------------------------


async def test_a_request_above_the_whole_tpm_is_refused_at_once_naming_the_limit() -> None:
    async with managed("openai", rate_limits={"openai": (None, 1000)}) as (manager, [server]):
        with pytest.raises(LLMLocalRateLimitError, match="1000") as caught:
            await manager.generate(request(max_tokens=4000), fallback=False)  # can never fit in 1,000 per minute
        assert caught.value.backend == "openai"
        assert gen_count("openai", server) == 0
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed" and health.error_count == 0


async def test_a_budget_covering_one_call_is_not_spent_fifty_times_by_concurrent_calls() -> None:
    providers = {"openai": "openai"}
    async with managed("openai", price_providers=providers) as (manager, [server]):  # what one call costs
        one = (await manager.generate(request(max_tokens=2), fallback=False)).cost_usd
    assert one is not None and one > 0
    budget = one * 1.5
    async with managed("openai", price_providers=providers, budget_usd=budget) as (manager, [server]):
        results = await asyncio.gather(*(manager.generate(request(max_tokens=2), fallback=False)
                                         for _ in range(50)), return_exceptions=True)
        sent = gen_count("openai", server)
        refused = [result for result in results if isinstance(result, LLMBudgetExceededError)]
        assert 1 <= sent <= 2, f"{sent} calls started against a budget of {budget:g} USD ({one:g} USD a call)"
        assert len(refused) == 50 - sent
        assert manager.usage_summary()["spent_usd"] <= budget + one
