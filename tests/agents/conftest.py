"""Fixtures for the agent-layer tests: an isolated configuration and real backends against fake OpenAI servers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm import config as config_module
from llm.base import LLMBackend, LLMBackendType, LLMConfig
from llm.config import ScoutConfig, reload_config
from llm.manager import LLMManager, reset_llm_manager
from tests.agents.helpers import Configure
from tests.fakes.openai_fake import API_KEY, FakeOpenAI


@pytest.fixture(autouse=True)
def configure(monkeypatch: pytest.MonkeyPatch) -> Configure:
    """No SCOUT_* variable from the outside world, no .env file; `configure(NAME=value, ...)` sets variables and
    rebuilds the global configuration. The previous configuration is restored after the test."""
    for name in list(os.environ):
        if name.startswith("SCOUT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCOUT_LOCAL_ENABLED", "false")  # the in-process model is tested in tests/backends/
    monkeypatch.setattr(config_module, "_config", None)

    def apply(**env: Any) -> ScoutConfig:
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        return reload_config(env_file=None)

    apply()
    return apply


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def deepseek_fake() -> AsyncIterator[FakeOpenAI]:
    """A second OpenAI-protocol server, served to the `deepseek` backend."""
    async with FakeOpenAI() as server:
        yield server


def openai_backend(server: FakeOpenAI, backend_type: LLMBackendType = LLMBackendType.OPENAI) -> LLMBackend:
    """A real OpenAI-protocol backend (OpenAI, or DeepSeek's thin subclass) pointed at a fake server."""
    from llm.backends import DeepSeekBackend, OpenAIBackend

    cls = DeepSeekBackend if backend_type == LLMBackendType.DEEPSEEK else OpenAIBackend
    return cls(LLMConfig(backend_type=backend_type, model_name="gpt-4.1-mini", api_key=API_KEY,  # type: ignore[arg-type]
                         base_url=server.base_url, timeout=5, retry_attempts=1, retry_delay=0.01))


def quiet_manager() -> LLMManager:
    """A manager with no background probes and one attempt per backend, so request counts are exact."""
    return LLMManager(health_check_interval=None, retry_attempts=1, timeout=5)


@pytest.fixture
async def manager(openai_fake: FakeOpenAI) -> AsyncIterator[LLMManager]:
    """A manager with one backend, `openai`, served by `openai_fake`."""
    manager = quiet_manager()
    assert await manager.register_backend(openai_backend(openai_fake))
    yield manager
    await manager.cleanup()


@pytest.fixture
async def two_backends(openai_fake: FakeOpenAI, deepseek_fake: FakeOpenAI) -> AsyncIterator[LLMManager]:
    """A manager with `openai` (default, on `openai_fake`) and `deepseek` (on `deepseek_fake`)."""
    manager = quiet_manager()
    assert await manager.register_backend(openai_backend(openai_fake))
    assert await manager.register_backend(openai_backend(deepseek_fake, LLMBackendType.DEEPSEEK))
    yield manager
    await manager.cleanup()


@pytest.fixture
async def global_manager() -> AsyncIterator[None]:
    """Forget the global manager before and after the test."""
    await reset_llm_manager()
    yield
    await reset_llm_manager()
