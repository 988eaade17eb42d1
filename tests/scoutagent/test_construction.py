"""Issue 10, point 1: the mixin in every construction pattern ScoutAgent's agents use, with a stand-in of its
`BaseAgent` (requires `name`, never calls `super().__init__()`), and with our cooperative `agents.base.BaseAgent`."""

from __future__ import annotations

from typing import Any

import pytest

from agents.base import AgentInput
from agents.base import BaseAgent as OurBaseAgent
from llm.manager import LLMManager
from llm.utils import LLMAgentMixin
from tests.agents.helpers import chat_requests
from tests.fakes.openai_fake import FakeOpenAI
from tests.scoutagent.standins import ScoutBaseAgent


@pytest.fixture(autouse=True)
def count_inits() -> None:
    ScoutBaseAgent.inits = 0


def assert_llm_ready(agent: Any, name: str, preferred: str | None, tasks: dict[str, str] | None = None) -> None:
    assert agent.name == name
    assert agent.preferred_backend == preferred
    assert agent.task_backend_preferences == (tasks or {})
    assert agent._llm_manager is None
    assert agent.llm_logger.name == f"llm.agent.{name}"
    assert agent.get_llm_status() == {"status": "not_initialized", "backends": []}
    agent.set_task_backend("summary", "claude")
    assert agent.task_backend_preferences["summary"] == "claude"


# -- ScoutAgent's BaseAgent (non-cooperative) ----------------------------------------------------------------------


def test_base_first_explicit_base_then_mixin() -> None:
    """Screener, Validator, Scout, GapFinder: `(BaseAgent, LLMAgentMixin)`, both __init__s called explicitly."""

    class Validator(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self, agent_id: str | None = None) -> None:
            ScoutBaseAgent.__init__(self, name="validator", agent_id=agent_id)
            LLMAgentMixin.__init__(self, preferred_backend="ollama")

    assert_llm_ready(Validator(), "validator", "ollama")
    assert ScoutBaseAgent.inits == 1


def test_base_first_explicit_mixin_then_base() -> None:
    class Reversed(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self) -> None:
            LLMAgentMixin.__init__(self, preferred_backend="ollama")
            ScoutBaseAgent.__init__(self, "screener")

    agent = Reversed()
    assert agent.name == "screener" and agent.preferred_backend == "ollama"
    assert agent.llm_logger.name == "llm.agent.screener"  # made before the agent had a name: named once it has one
    assert ScoutBaseAgent.inits == 1


def test_mixin_first_explicit_base_then_mixin() -> None:
    """ResearchAgent: `(LLMAgentMixin, BaseAgent)`; the original issue: `BaseAgent.__init__() missing 'name'`."""

    class Research(LLMAgentMixin, ScoutBaseAgent):
        def __init__(self, name: str = "research", **kwargs: Any) -> None:
            ScoutBaseAgent.__init__(self, name=name, **kwargs)
            LLMAgentMixin.__init__(self, preferred_backend="ollama")

    agent = Research()
    assert_llm_ready(agent, "research", "ollama")
    assert ScoutBaseAgent.inits == 1  # the mixin did not run BaseAgent.__init__ again (without a name)


def test_mixin_first_explicit_mixin_then_base() -> None:
    class Research(LLMAgentMixin, ScoutBaseAgent):
        def __init__(self) -> None:
            LLMAgentMixin.__init__(self, preferred_backend="ollama")
            ScoutBaseAgent.__init__(self, "research")

    agent = Research()
    assert agent.name == "research" and agent.preferred_backend == "ollama" and agent.task_backend_preferences == {}
    assert ScoutBaseAgent.inits == 1


def test_an_agent_built_inside_another_agent() -> None:
    """Validator, GapFinder and Scout build a ResearchAgent in their own __init__."""

    class Research(LLMAgentMixin, ScoutBaseAgent):
        def __init__(self) -> None:
            ScoutBaseAgent.__init__(self, "research")
            LLMAgentMixin.__init__(self, preferred_backend="ollama")

    class GapFinder(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self) -> None:
            ScoutBaseAgent.__init__(self, name="gap_finder")
            LLMAgentMixin.__init__(self, preferred_backend="ollama")
            self.research = Research()

    agent = GapFinder()
    assert agent.research.name == "research" and agent.name == "gap_finder"
    assert ScoutBaseAgent.inits == 2


def test_mixin_preferred_none_gets_the_name_defaults() -> None:
    """Scout passes `preferred_backend=None`: the name-based defaults of contract 3.5 apply."""

    class Analysis(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self) -> None:
            ScoutBaseAgent.__init__(self, name="analysis")
            LLMAgentMixin.__init__(self, preferred_backend=None)

    agent = Analysis()
    assert agent.preferred_backend == "openai"
    assert agent.task_backend_preferences["research"] == "openai"


def test_super_init_never_reaches_the_mixin_and_its_defaults_still_work() -> None:
    """`class X(BaseAgent, LLMAgentMixin)` with `super().__init__(name=...)`: ScoutAgent's BaseAgent does not pass
    the call on, so the mixin's __init__ never runs (the original's optimization example crashed here)."""

    class Optimizer(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self) -> None:
            super().__init__(name="optimizer")

    agent = Optimizer()
    assert "preferred_backend" not in vars(agent) and "_preferred_backend" not in vars(agent)  # never initialised
    assert_llm_ready(agent, "optimizer", None)
    assert agent._resolve_backend_and_model("summary", None) == ("claude", None)
    assert agent._resolve_backend_and_model(None, None) == (None, None)
    other = Optimizer()
    assert other.task_backend_preferences == {}  # the lazily made dict is per agent, not shared


def test_an_agent_that_never_calls_any_init_of_the_mixin() -> None:
    class Plain(LLMAgentMixin):
        def __init__(self) -> None:
            self.name = "plain"

    agent = Plain()
    assert_llm_ready(agent, "plain", None)
    agent.task_backend_preferences = {"x": "gemini"}  # replaced wholesale, as callers do
    assert agent._resolve_backend_and_model("x", None) == ("gemini", None)
    agent.initialize_llm()


def test_mixin_only_class_calling_super_init_with_no_arguments() -> None:
    """ScoutAgent's test_llm_integration: `self.name = ...; super().__init__()` in a class of the mixin only."""

    class TestAgent(LLMAgentMixin):
        def __init__(self) -> None:
            self.name = "test_agent"
            super().__init__()

    agent = TestAgent()
    assert agent.llm_logger.name == "llm.agent.test_agent"
    assert agent.preferred_backend == "openai"  # name default: nothing matched


async def test_an_uninitialised_mixin_generates_through_an_injected_manager(
    manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    class Optimizer(ScoutBaseAgent, LLMAgentMixin):
        def __init__(self) -> None:
            super().__init__(name="optimizer")

    agent = Optimizer()
    agent._llm_manager = manager
    assert await agent.llm_generate("hello") == "echo: hello"
    assert [chunk async for chunk in agent.llm_stream_generate("streamed")] != []
    assert len(chat_requests(openai_fake.requests)) == 2


# -- our own BaseAgent stays cooperative --------------------------------------------------------------------------


class OurAgent(OurBaseAgent, LLMAgentMixin):
    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        return {}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
        return None


class OurMixinFirst(LLMAgentMixin, OurBaseAgent):
    plan, think, act = OurAgent.plan, OurAgent.think, OurAgent.act


@pytest.mark.parametrize("cls", [OurAgent, OurMixinFirst])
def test_our_base_agent_initialises_the_mixin_through_super_in_both_orders(cls: type[Any]) -> None:
    agent = cls(name="optimizer", preferred_backend="claude")
    assert agent.name == "optimizer" and agent.state.name == "optimizer"
    assert agent.preferred_backend == "claude" and agent.llm_logger.name == "llm.agent.optimizer"


@pytest.mark.parametrize("cls", [OurAgent, OurMixinFirst])
def test_our_base_agent_with_explicit_init_calls_in_either_order(cls: type[Any]) -> None:
    agent = cls.__new__(cls)
    OurBaseAgent.__init__(agent, "research")
    agent_id = agent.agent_id
    LLMAgentMixin.__init__(agent, preferred_backend="ollama")
    assert agent.agent_id == agent_id and agent.preferred_backend == "ollama"
    late = cls.__new__(cls)
    LLMAgentMixin.__init__(late, preferred_backend="ollama")
    OurBaseAgent.__init__(late, "research")
    assert late.name == "research" and late.preferred_backend == "ollama"  # not reset by BaseAgent's super() call
    assert late.llm_logger.name == "llm.agent.research"
