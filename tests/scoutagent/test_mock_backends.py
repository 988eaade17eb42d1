"""Issue 10, point 5: backends written the way ScoutAgent's tests write them -- a `Mock` whose `initialize`,
`generate`, `stream_generate`, `health_check` and `cleanup` return plain values -- work with the manager and the
mixin: each method is awaited only when what it returned is awaitable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest

from llm.backends import OpenAIBackend
from llm.base import LLMBackend, LLMBackendType, LLMConfig, LLMRequest, LLMResponse
from llm.errors import LLMBackendError
from llm.manager import LLMManager
from llm.utils import LLMAgentMixin
from tests.agents.conftest import openai_backend
from tests.fakes.openai_fake import FakeOpenAI

REQUEST = LLMRequest(messages=[{"role": "user", "content": "test"}])


def answer(content: str = "test response") -> LLMResponse:
    return LLMResponse(content=content, model="gpt-4", backend_type="openai", usage={}, metadata={}, success=True)


def mock_backend(backend_type: LLMBackendType = LLMBackendType.OPENAI) -> Mock:
    """ScoutAgent's fixture shape: a bare Mock with a real config and plain (non-async) Mock methods."""
    backend = Mock()
    backend.config = LLMConfig(backend_type=backend_type, model_name="gpt-4", api_key="test-key")  # type: ignore[arg-type]
    backend.initialize = Mock(return_value=True)
    backend.generate = Mock(return_value=answer())
    backend.health_check = Mock(return_value=True)
    backend.cleanup = Mock()
    return backend


def quiet() -> LLMManager:
    return LLMManager(health_check_interval=None, retry_attempts=1, timeout=5)


async def test_register_generate_probe_and_unregister_a_mock_backend() -> None:
    manager, backend = quiet(), mock_backend()
    assert await manager.register_backend(backend, is_default=True) is True
    backend.initialize.assert_called_once()
    assert manager.get_default_backend() == "openai"
    response = await manager.generate(REQUEST, backend_type="openai")
    assert response.content == "test response" and response.success is True
    backend.generate.assert_called_once_with(REQUEST)
    assert await manager.check_health() == {"openai": True}
    backend.health_check.assert_called_once()
    assert await manager.unregister_backend("openai") is True
    backend.cleanup.assert_called_once()


async def test_a_temperature_on_a_mock_backend_is_checked_with_the_default_range() -> None:
    manager, backend = quiet(), mock_backend()
    await manager.register_backend(backend)
    await manager.generate(LLMRequest(messages=[{"role": "user", "content": "t"}], temperature=0.5))
    with pytest.raises(ValueError, match="temperature"):
        await manager.generate(LLMRequest(messages=[{"role": "user", "content": "t"}], temperature=7.0))
    assert backend.generate.call_count == 1


async def test_initialize_returning_false_registers_nothing() -> None:
    manager, backend = quiet(), mock_backend()
    backend.initialize.return_value = False
    assert await manager.register_backend(backend) is False
    assert manager.get_available_backends() == []


async def test_a_generate_that_returns_no_response_is_a_typed_error_sent_once() -> None:
    manager, backend = quiet(), mock_backend()
    backend.generate = Mock()  # returns a Mock, not an LLMResponse
    await manager.register_backend(backend)
    with pytest.raises(LLMBackendError, match="generate\\(\\) returned Mock, not an LLMResponse"):
        await manager.generate(REQUEST)
    assert backend.generate.call_count == 1


async def _chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


STREAM_SHAPES: dict[str, Any] = {
    "list": lambda: Mock(return_value=["Hel", "lo"]),
    "async-iterator": lambda: Mock(side_effect=lambda request: _chunks("Hel", "lo")),
    "awaitable-list": lambda: AsyncMock(return_value=["Hel", "lo"]),
    "iterator": lambda: Mock(side_effect=lambda request: iter(["Hel", "lo"])),
}


@pytest.mark.parametrize("shape", sorted(STREAM_SHAPES))
async def test_a_mock_stream_generate_streams_through_the_manager(shape: str) -> None:
    manager, backend = quiet(), mock_backend()
    backend.stream_generate = STREAM_SHAPES[shape]()
    await manager.register_backend(backend)
    assert [chunk async for chunk in manager.stream_generate(REQUEST)] == ["Hel", "lo"]
    events = [event async for event in manager.stream(REQUEST)]
    done = events[-1].response
    assert (done.content, done.backend_type, done.model) == ("Hello", "openai", "gpt-4")
    assert backend.stream_generate.call_count == 2


async def test_the_mixin_generates_and_streams_through_a_mock_backend() -> None:
    class TestAgent(LLMAgentMixin):
        def __init__(self) -> None:
            self.name = "test_agent"
            super().__init__()

    manager, backend = quiet(), mock_backend()
    backend.stream_generate = Mock(return_value=["a", "b"])
    await manager.register_backend(backend)
    agent = TestAgent()
    agent._llm_manager = manager
    assert await agent.llm_generate("hi") == "test response"
    assert [chunk async for chunk in agent.llm_stream_generate("hi")] == ["a", "b"]
    assert backend.generate.call_count == 1 and backend.stream_generate.call_count == 1


async def test_a_real_adapter_with_a_mocked_stream_generate_uses_the_mock(openai_fake: Any) -> None:
    assert isinstance(openai_fake, FakeOpenAI)
    backend = openai_backend(openai_fake)
    assert isinstance(backend, OpenAIBackend)
    backend.stream_generate = Mock(return_value=["mocked"])  # type: ignore[method-assign]
    manager = quiet()
    await manager.register_backend(backend)
    try:
        assert [chunk async for chunk in manager.stream_generate(REQUEST)] == ["mocked"]
        assert openai_fake.count("/chat/completions") == 0
        assert (await manager.generate(REQUEST)).content == "echo: test"  # generate still goes to the server
        assert openai_fake.count("/chat/completions") == 1
    finally:
        await manager.cleanup()


class PlainBackend(LLMBackend):
    """A custom backend written with plain (non-async) methods."""

    cleaned = 0

    def initialize(self) -> bool:  # type: ignore[override]
        return True

    def generate(self, request: LLMRequest) -> LLMResponse:  # type: ignore[override]
        return self._create_response("plain answer", self.resolve_model(request))

    def stream_generate(self, request: LLMRequest) -> list[str]:  # type: ignore[override]
        return ["plain ", "stream"]

    def health_check(self) -> bool:  # type: ignore[override]
        return True

    def cleanup(self) -> None:  # type: ignore[override]
        PlainBackend.cleaned += 1

    def get_available_models(self) -> list[str]:
        return ["plain-model"]


async def test_a_backend_with_plain_methods_is_served() -> None:
    backend = PlainBackend(LLMConfig(backend_type=LLMBackendType.GEMINI, model_name="plain-model"))
    manager = quiet()
    assert await manager.register_backend(backend)
    assert (await manager.generate(REQUEST)).content == "plain answer"
    assert [chunk async for chunk in manager.stream_generate(REQUEST)] == ["plain ", "stream"]
    done = [event async for event in manager.stream(REQUEST)][-1].response
    assert (done.content, done.backend_type, done.model) == ("plain stream", "gemini", "plain-model")
    assert await manager.check_health() == {"gemini": True}
    await manager.cleanup()
    assert PlainBackend.cleaned == 1
