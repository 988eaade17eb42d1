"""The manager's API and contract (SCOUTAGENT.md 1.4, 3.2, 3.3, 7): construction, registration, defaults, health
snapshots, routing and failover rules, model overrides, concurrency limits, the typed stream and custom backends.

The reliability scenarios are in tests/test_reliability.py and tests/manager/; `initialize_llm_backends` and the
global manager in tests/manager/test_bootstrap.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import llm.config
from llm.base import LLMBackend, LLMBackendType, LLMRequest, LLMResponse, ResponseDone, TextDelta, ToolCallDelta
from llm.config import LLMSettings, ScoutConfig
from llm.errors import LLMAllBackendsFailedError, LLMBackendError, LLMServerError, LLMTimeoutError
from llm.manager import BackendHealth, LLMManager, ManagerPolicy
from tests.fakes.server import Delay, Reply, StreamReply
from tests.manager.helpers import FAST, VENDOR, backend_for, fake_for, managed, other_tasks, request


def err(status: int) -> Reply:
    return VENDOR["openai"].error_reply(status, {})


class EchoBackend(LLMBackend):
    """A custom (non-SDK) backend, as ScoutAgent users write them: a sync `initialize`, local answers."""

    def __init__(self, name: str = "ollama", ready: Any = True, fail_with: Exception | None = None) -> None:
        super().__init__(llm.base.LLMConfig(backend_type=name, model_name="echo-1"))
        self.ready, self.fail_with, self.cleaned, self.initialized = ready, fail_with, 0, 0

    def initialize(self) -> Any:  # type: ignore[override]  # the contract allows a plain bool
        self.initialized += 1
        if isinstance(self.ready, Exception):
            raise self.ready
        return self.ready

    async def generate(self, request: LLMRequest) -> LLMResponse:
        if self.fail_with is not None:
            raise self.fail_with
        return self._create_response(f"echo: {request.messages[-1]['content']}", "echo-1")

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        for word in ("echo:", " ", request.messages[-1]["content"]):
            yield word

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return ["echo-1"]

    async def cleanup(self) -> None:
        self.cleaned += 1


def test_construction_has_no_side_effects(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config read, no directory, no task, no loop needed (defect 3); unknown policy keys are rejected."""
    monkeypatch.setattr(llm.config, "_config", None)
    monkeypatch.chdir(tmp_path)
    manager = LLMManager()
    assert llm.config._config is None and os.listdir(tmp_path) == []
    assert manager.get_available_backends() == [] and manager.get_default_backend() is None
    assert repr(manager) == "LLMManager(backends=[], default=None)"
    assert LLMManager(timeout=3, breaker_min_calls=2).policy == ManagerPolicy(timeout=3, breaker_min_calls=2)
    with pytest.raises(llm.LLMConfigError, match="retry_attemps"):  # named, with the options that exist
        LLMManager(retry_attemps=2)
    with pytest.raises(ValueError):
        LLMManager(timeout=0)


async def test_async_with_starts_and_stops_the_background_task() -> None:
    async with fake_for("openai") as server:
        backend = backend_for("openai", server)
        async with LLMManager() as manager:
            await manager.register_backend(backend)
            assert [t.get_name() for t in other_tasks()].count("llm-manager-health") == 1
            assert (await manager.generate(request())).content == "echo: hi"
        assert backend._client is None and manager.get_available_backends() == []
        await asyncio.sleep(0)
        assert not [t for t in other_tasks() if t.get_name() == "llm-manager-health"]


async def test_register_accepts_plain_bool_and_rejects_false_or_raising_initialize() -> None:
    async with LLMManager() as manager:
        assert await manager.register_backend(EchoBackend(ready=True))
        assert not await manager.register_backend(EchoBackend("openai", ready=False))
        assert not await manager.register_backend(EchoBackend("claude", ready=RuntimeError("no SDK")))
        assert manager.get_available_backends() == ["ollama"]
        response = await manager.generate(request(), LLMBackendType.OLLAMA)
        text = "".join([chunk async for chunk in manager.stream_generate(request())])
    assert response.content == text == "echo: hi" and response.backend_type == "ollama"


async def test_reregistering_a_name_cleans_up_the_old_backend() -> None:
    old, new = EchoBackend(), EchoBackend()
    async with LLMManager() as manager:
        await manager.register_backend(old)
        await manager.register_backend(new)
        assert manager.backends == {"ollama": new} and (old.cleaned, new.cleaned) == (1, 0)
    assert new.cleaned == 1


async def test_default_backend_rules() -> None:
    async with LLMManager() as manager:
        await manager.register_backend(EchoBackend("openai"))
        await manager.register_backend(EchoBackend("claude"))
        assert manager.get_default_backend() == "openai"  # the first registered
        await manager.register_backend(EchoBackend("gemini"), is_default=True)
        assert manager.get_default_backend() == "gemini"
        assert not manager.set_default_backend("deepseek") and manager.get_default_backend() == "gemini"
        assert manager.set_default_backend(LLMBackendType.CLAUDE) and manager.get_default_backend() == "claude"
        assert await manager.unregister_backend(LLMBackendType.CLAUDE)
        assert manager.get_default_backend() == "openai"  # the next remaining
        assert not await manager.unregister_backend("claude")
        assert await manager.unregister_backend("openai") and await manager.unregister_backend("gemini")
        assert manager.get_default_backend() is None
        await asyncio.sleep(0)
        assert not [t for t in other_tasks() if t.get_name() == "llm-manager-health"]  # stops with the last one


async def test_backend_health_contract_fields_wall_clock_and_real_average() -> None:
    """BackendHealth keeps the contract's five fields first; last_check is epoch time (defect 15); the average is a
    real mean (0.05, 0.05, 0.2 -> 0.1, where the original's (avg + rt) / 2 gives 0.125)."""
    assert [f.name for f in dataclasses.fields(BackendHealth)][:5] == [
        "backend_type", "is_healthy", "last_check", "error_count", "avg_response_time"]
    async with managed("openai") as (manager, (server,)):
        server.enqueue(Delay(0.05), Delay(0.05), Delay(0.2))
        for _ in range(3):
            await manager.generate(request())
        health = manager.get_backend_health("openai")
        snapshot = manager.get_all_health_status()
        snapshot["openai"].error_count = 99
        status = manager.get_llm_status()
    assert health is not None and abs(health.last_check - time.time()) < 5
    assert 0.095 <= health.avg_response_time < 0.115, health.avg_response_time
    assert manager.get_backend_health("nope") is None
    assert status["health_status"]["openai"].error_count == 0  # snapshots are copies
    assert set(status) == {"backends", "healthy_backends", "default_backend", "health_status"}
    assert status["backends"] == status["healthy_backends"] == ["openai"] and status["default_backend"] == "openai"


async def test_explicit_backend_goes_first_and_still_fails_over() -> None:
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        assert (await manager.generate(request(), "deepseek")).backend_type == "deepseek"
        secondary.enqueue(err(500), err(500), err(500))
        response = await manager.generate(request(), backend_type="deepseek")
        assert response.backend_type == "openai"
        secondary.enqueue(err(500), err(500), err(500))
        with pytest.raises(LLMServerError) as caught:
            await manager.generate(request(), "deepseek", fallback=False)
    assert caught.value.backend == "deepseek"
    assert (primary.count("/chat"), secondary.count("/chat")) == (1, 7)


async def test_model_override_a_fallback_does_not_list_is_replaced_by_its_own_model() -> None:
    """Never a hard-coded list (defect 7): the fallback's own models listing decides; the caller's request is kept."""
    original = request(extra_params={"model_name_override": "gpt-4o"})
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(err(500), err(500), err(500))
        unknown = await manager.generate(original)
        await manager.check_health()  # deepseek now lists gpt-4.1-mini, gpt-4o, gpt-4o-mini
        primary.enqueue(err(500), err(500), err(500))
        listed = await manager.generate(original)
    assert [r.body["model"] for r in primary.requests if r.method == "POST"] == ["gpt-4o"] * 6
    assert [r.body["model"] for r in secondary.requests if r.method == "POST"] == ["deepseek-chat", "gpt-4o"]
    assert unknown.metadata["attempts"][-1]["model"] == "deepseek-chat" and listed.model == "gpt-4o"
    assert original.extra_params == {"model_name_override": "gpt-4o"}


async def test_fallback_order_from_policy_and_from_settings() -> None:
    settings = ScoutConfig(llm=LLMSettings(fallback_order=["claude"]))
    async with managed("openai", "deepseek", "claude", retry_attempts=1, fallback_order=("claude", "deepseek")) as (
            manager, (first, _, _)):
        first.enqueue(err(500), err(500))
        assert (await manager.generate(request())).backend_type == "claude"
        manager._config, manager.policy = settings, dataclasses.replace(manager.policy, fallback_order=None)
        response = await manager.generate(request())
    assert [a["backend"] for a in response.metadata["attempts"]] == ["openai", "claude"]


async def test_max_concurrency_per_backend_including_open_streams() -> None:
    async with managed("openai", max_concurrency=2) as (manager, (server,)):
        server.enqueue(*(Delay(0.1) for _ in range(6)))
        start = time.monotonic()
        await asyncio.gather(*(manager.generate(request()) for _ in range(6)))
        elapsed = time.monotonic() - start
        times = [t - start for t in server.requests.times]
        assert 0.3 <= elapsed < 0.6 and sorted(times)[2] >= 0.1 and sorted(times)[4] >= 0.2, times
    async with managed("openai", max_concurrency=1, attempt_timeout=0.1) as (manager, (server,)):
        server.enqueue(StreamReply(VENDOR["openai"].midstream_error[0].chunks[:-1], then="hang"))  # type: ignore[index]
        stream = manager.stream_generate(request())
        assert await anext(stream) == "Hello"
        with pytest.raises(LLMTimeoutError):  # the open stream holds the only slot
            await manager.generate(request(), fallback=False)
        await stream.aclose()
        assert (await manager.generate(request())).content == "echo: hi"
    assert server.count("/chat") == 2


async def test_typed_stream_carries_tool_calls_usage_and_the_final_response() -> None:
    reply, expected = VENDOR["openai"].tools_stream  # type: ignore[misc]
    async with managed("openai") as (manager, (server,)):
        server.enqueue(reply)
        events = [event async for event in manager.stream(request(tools=[{"type": "function", "function": {
            "name": "multiply", "parameters": {"type": "object"}}}]))]
    done = events[-1]
    assert isinstance(done, ResponseDone) and any(isinstance(e, ToolCallDelta) for e in events[:-1])
    assert not [e for e in events[:-1] if isinstance(e, ResponseDone)]
    response = done.response
    assert [(c.name, c.arguments) for c in response.tool_calls] == expected.tool_calls
    assert response.usage == expected.usage and response.finish_reason == "tool_calls"
    assert response.backend_type == "openai" and response.metadata["attempts"][0]["outcome"] == "ok"


async def test_custom_backend_raw_exception_alone_unchanged_in_group_wrapped() -> None:
    """The contract re-raises what a custom backend raises; in a group it is wrapped into an LLMError."""
    boom = RuntimeError("boom")
    async with LLMManager(**FAST) as manager:
        await manager.register_backend(EchoBackend("ollama", fail_with=boom))
        with pytest.raises(RuntimeError) as alone:
            await manager.generate(request())
        await manager.register_backend(EchoBackend("claude", fail_with=LLMServerError("down", retryable=False)))
        with pytest.raises(LLMAllBackendsFailedError) as group:
            await manager.generate(request())
        events = [e async for e in manager.stream(request(), "claude")]  # streams use stream_generate: fine
    assert alone.value is boom
    wrapped = group.value.exceptions[0]
    assert isinstance(wrapped, LLMBackendError) and wrapped.__cause__ is boom and wrapped.backend == "ollama"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: hi"
