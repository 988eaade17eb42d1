"""Issue 10, point 6: a model belongs to a backend. `SCOUT_LLM_DEFAULT_MODEL` goes with the default backend, a
per-agent model with its per-agent backend; a call routed or failed over to another backend is answered with that
backend's configured model (said once in the log), never with a model name of another vendor."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm.agent import routing
from llm.backends import DeepSeekBackend, OpenAIBackend
from llm.base import LLMBackendType, LLMConfig, LLMRequest
from llm.call import chain as _call
from llm.manager import LLMManager
from llm.utils import LLMAgentMixin
from tests.agents.helpers import Configure, chat_requests
from tests.fakes.openai_fake import API_KEY, FakeOpenAI
from tests.fakes.server import Reply

OPENAI_MODEL, DEEPSEEK_MODEL = "gpt-4.1-mini", "deepseek-chat"


class Agent(LLMAgentMixin):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()


def backend(server: FakeOpenAI, backend_type: LLMBackendType, model: str) -> Any:
    cls = DeepSeekBackend if backend_type == LLMBackendType.DEEPSEEK else OpenAIBackend
    return cls(LLMConfig(backend_type=backend_type, model_name=model, api_key=API_KEY,  # type: ignore[arg-type]
                         base_url=server.base_url, timeout=5, retry_attempts=1, retry_delay=0.01))


@pytest.fixture(autouse=True)
def fresh_once_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_call, "_model_swaps_logged", set())
    monkeypatch.setattr(routing, "_reroutes_logged", set())


async def make_manager(*backends: Any) -> LLMManager:
    manager = LLMManager(health_check_interval=None, retry_attempts=1, timeout=5)
    for item in backends:
        assert await manager.register_backend(item)
    return manager


@pytest.fixture
async def both(openai_fake: FakeOpenAI, deepseek_fake: FakeOpenAI) -> AsyncIterator[LLMManager]:
    """`openai` (the manager's default, model gpt-4.1-mini) and `deepseek` (model deepseek-chat)."""
    manager = await make_manager(backend(openai_fake, LLMBackendType.OPENAI, OPENAI_MODEL),
                                 backend(deepseek_fake, LLMBackendType.DEEPSEEK, DEEPSEEK_MODEL))
    yield manager
    await manager.cleanup()


def models_sent(server: FakeOpenAI) -> list[str]:
    return [request.body["model"] for request in chat_requests(server.requests)]


async def test_the_default_model_goes_with_the_default_backend(
    configure: Configure, both: LLMManager, openai_fake: FakeOpenAI, deepseek_fake: FakeOpenAI
) -> None:
    configure(SCOUT_LLM_DEFAULT_BACKEND="deepseek", SCOUT_LLM_DEFAULT_MODEL="deepseek-reasoner")
    agent = Agent("scout_agent")
    agent._llm_manager = both
    await agent.llm_generate("one")
    assert models_sent(deepseek_fake) == ["deepseek-reasoner"] and models_sent(openai_fake) == []
    await agent.llm_generate("two", backend_type="openai")  # another backend, asked for by name: its own model
    assert models_sent(openai_fake) == [OPENAI_MODEL]


async def test_a_default_backend_that_is_not_registered_takes_its_model_along(
    configure: Configure, openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """ScoutAgent's scripts: `SCOUT_LLM_DEFAULT_BACKEND=deepseek`, `SCOUT_LLM_DEFAULT_MODEL=deepseek-chat`, while
    only another backend serves. The original sent its own model there; so do we (and say so once)."""
    configure(SCOUT_LLM_DEFAULT_BACKEND="deepseek", SCOUT_LLM_DEFAULT_MODEL=DEEPSEEK_MODEL)
    manager = await make_manager(backend(openai_fake, LLMBackendType.OPENAI, OPENAI_MODEL))
    agent = Agent("scout_agent")
    agent._llm_manager = manager
    with caplog.at_level(logging.INFO, logger="llm.agent"):
        for prompt in ("one", "two", "three"):
            assert await agent.llm_generate(prompt) == f"echo: {prompt}"
    await manager.cleanup()
    assert models_sent(openai_fake) == [OPENAI_MODEL] * 3
    said = [record.getMessage() for record in caplog.records if record.name == "llm.agent.scout_agent"]
    assert len(said) == 1 and "deepseek" in said[0] and repr(DEEPSEEK_MODEL) in said[0]


async def test_a_per_agent_model_goes_with_its_per_agent_backend(
    configure: Configure, both: LLMManager, openai_fake: FakeOpenAI, deepseek_fake: FakeOpenAI
) -> None:
    configure(SCOUT_LLM_AGENT_VALIDATOR_BACKEND="deepseek", SCOUT_LLM_AGENT_VALIDATOR_MODEL="deepseek-reasoner",
              SCOUT_LLM_DEFAULT_BACKEND="openai", SCOUT_LLM_DEFAULT_MODEL="gpt-4o")
    validator, screener = Agent("validator_agent"), Agent("screener")
    validator._llm_manager = screener._llm_manager = both
    await validator.llm_generate("v")
    await screener.llm_generate("s")
    assert models_sent(deepseek_fake) == ["deepseek-reasoner"] and models_sent(openai_fake) == ["gpt-4o"]
    validator.set_task_backend("validation", "openai")  # a task routed elsewhere: that backend's own model
    await validator.llm_generate("t", task_type="validation")
    await screener.llm_generate("d", backend_type="deepseek")
    assert models_sent(openai_fake) == ["gpt-4o", OPENAI_MODEL]
    assert models_sent(deepseek_fake) == ["deepseek-reasoner", DEEPSEEK_MODEL]


async def test_a_model_only_setting_goes_to_the_managers_default_backend(
    configure: Configure, both: LLMManager, openai_fake: FakeOpenAI
) -> None:
    """Contract 3.4: `(None, model)` is the default backend's model (SCOUT_LLM_DEFAULT_BACKEND unset)."""
    configure(SCOUT_LLM_DEFAULT_MODEL="gpt-4o")
    agent = Agent("scout_agent")
    agent._llm_manager = both
    await agent.llm_generate("x")
    assert models_sent(openai_fake) == ["gpt-4o"]


async def test_failover_answers_with_the_fallbacks_configured_model(
    configure: Configure, both: LLMManager, openai_fake: FakeOpenAI, deepseek_fake: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(SCOUT_LLM_DEFAULT_BACKEND="deepseek", SCOUT_LLM_DEFAULT_MODEL="deepseek-reasoner")
    agent = Agent("scout_agent")
    agent._llm_manager = both
    overloaded = Reply(status=503, body={"error": {"message": "overloaded", "type": "server_error", "param": None,
                                                   "code": None}})
    deepseek_fake.enqueue(overloaded, overloaded)
    with caplog.at_level(logging.WARNING, logger="llm.manager"):
        assert await agent.llm_generate("first") == "echo: first"
        assert await agent.llm_generate("second") == "echo: second"
    assert models_sent(deepseek_fake) == ["deepseek-reasoner"] * 2
    assert models_sent(openai_fake) == [OPENAI_MODEL] * 2  # never deepseek-reasoner
    swaps = [record.getMessage() for record in caplog.records if "does not list model" in record.getMessage()]
    assert len(swaps) == 1 and "'deepseek-reasoner'" in swaps[0] and repr(OPENAI_MODEL) in swaps[0]


async def test_the_attempt_trail_names_each_backends_model(
    configure: Configure, both: LLMManager, deepseek_fake: FakeOpenAI
) -> None:
    deepseek_fake.enqueue(Reply(status=500, body={"error": {"message": "boom", "type": "server_error",
                                                            "param": None, "code": None}}))
    request = LLMRequest(messages=[{"role": "user", "content": "x"}],
                         extra_params={"model_name_override": "deepseek-reasoner"})
    response = await both.generate(request, "deepseek")
    trail = [(a["backend"], a["model"], a["outcome"]) for a in response.metadata["attempts"]]
    assert trail == [("deepseek", "deepseek-reasoner", "LLMServerError"), ("openai", OPENAI_MODEL, "ok")]
    assert response.backend_type == "openai"
    assert request.extra_params == {"model_name_override": "deepseek-reasoner"}  # the caller's request unchanged
