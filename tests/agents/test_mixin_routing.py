"""LLMAgentMixin routing: the precedence of contract 3.4, the name-based defaults of 3.5, config routes from
SCOUT_LLM_AGENT_* variables, cooperative construction, and get_optimal_backend agreeing with llm_generate."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest

from agents.base import AgentInput, BaseAgent
from llm.base import LLMBackendType, LLMConfig, LLMResponse
from llm.errors import LLMError, LLMValidationError
from llm.manager import LLMManager, get_llm_manager
from llm.utils import LLMAgentMixin
from tests.agents.conftest import quiet_manager
from tests.agents.helpers import Configure, chat_requests
from tests.fakes.openai_fake import FakeOpenAI


class Agent(BaseAgent, LLMAgentMixin):
    """A minimal LLM agent, initialised the cooperative way."""

    def __init__(self, name: str | None = "test_agent", **kwargs: Any) -> None:
        super().__init__(name=name or "unnamed", **kwargs)
        if name is None:
            self.name = None  # type: ignore[assignment]

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        return {}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
        return None


class MixinOnly(LLMAgentMixin):
    """The seed README's shape: a class that only subclasses the mixin and defines no __init__."""


# -- _agent_key -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [("scout_agent", "scout"), ("validator_agent", "validator"), ("gap_finder_agent", "gap_finder"),
     ("screener", "screener"), ("Foo-Bar Agent", "foo_bar"), ("writer", "writer"), ("agent", "agent")],
)
def test_agent_key_has_no_trailing_separator(name: str, key: str) -> None:
    assert Agent(name)._agent_key() == key


def test_agent_key_falls_back_to_the_class_name() -> None:
    class CodeOptimizedAgent(LLMAgentMixin):
        pass

    assert CodeOptimizedAgent()._agent_key() == "codeoptimized"


# -- name-based defaults (3.5) --------------------------------------------------------------------------------------

CODE_TASKS = dict.fromkeys(("code_generation", "code_review", "debugging", "technical_analysis"), "deepseek")
WRITER_TASKS = dict.fromkeys(("creative_writing", "content_creation", "storytelling", "editing"), "claude")
ANALYSIS_TASKS = dict.fromkeys(("data_analysis", "research", "reasoning", "planning"), "openai")
GAP_TASKS = {"market_analysis": "claude", "competitive_analysis": "openai", "trend_analysis": "gemini",
             "quick_insights": "gemini"}


@pytest.mark.parametrize(
    ("name", "preferred", "tasks"),
    [
        ("code_reviewer", "deepseek", CODE_TASKS),
        ("Builder", "deepseek", CODE_TASKS),
        ("writer", "claude", WRITER_TASKS),
        ("content_bot", "claude", WRITER_TASKS),
        ("analysis", "openai", ANALYSIS_TASKS),
        ("deep_research", "openai", ANALYSIS_TASKS),
        ("gap_finder", "claude", GAP_TASKS),
        ("pathfinder", "claude", GAP_TASKS),
        ("code_writer", "deepseek", CODE_TASKS),  # first matching row wins
        ("scout_agent", "openai", {}),
        (None, "openai", {}),
    ],
)
def test_name_based_defaults(name: str | None, preferred: str, tasks: dict[str, str]) -> None:
    agent = Agent(name)
    assert agent.preferred_backend == preferred
    assert agent.task_backend_preferences == tasks


def test_an_explicit_preferred_backend_skips_the_name_defaults() -> None:
    agent = Agent("writer", preferred_backend="ollama")
    assert agent.preferred_backend == "ollama"
    assert agent.task_backend_preferences == {}


def test_an_agent_can_opt_out_of_name_defaults() -> None:
    class Neutral(Agent):
        llm_name_defaults = False

    agent = Neutral("writer")
    assert agent.preferred_backend is None and agent.task_backend_preferences == {}
    assert agent._resolve_backend_and_model(None, None) == (None, None)


# -- precedence (3.4) -----------------------------------------------------------------------------------------------


def routed_agent(configure: Configure, **env: Any) -> Agent:
    configure(**env)
    agent = Agent("scout_agent", preferred_backend="gemini")
    agent.set_task_backend("planning", "claude")
    return agent


FULL_ROUTING = {"SCOUT_LLM_AGENT_SCOUT_BACKEND": "deepseek", "SCOUT_LLM_AGENT_SCOUT_MODEL": "deepseek-chat",
                "SCOUT_LLM_DEFAULT_BACKEND": "openai", "SCOUT_LLM_DEFAULT_MODEL": "gpt-4o"}


def test_rule1_explicit_backend_beats_everything(configure: Configure) -> None:
    agent = routed_agent(configure, **FULL_ROUTING)
    assert agent._resolve_backend_and_model("planning", "ollama") == ("ollama", None)
    assert agent._resolve_backend_and_model("planning", LLMBackendType.OLLAMA) == ("ollama", None)


def test_rule2_task_preference_beats_config_and_preferred(configure: Configure) -> None:
    agent = routed_agent(configure, **FULL_ROUTING)
    assert agent._resolve_backend_and_model("planning", None) == ("claude", None)


def test_rule3_agent_config_route_beats_global_default_and_preferred(configure: Configure) -> None:
    agent = routed_agent(configure, **FULL_ROUTING)
    assert agent._resolve_backend_and_model("unlisted_task", None) == ("deepseek", "deepseek-chat")
    assert agent._resolve_backend_and_model(None, None) == ("deepseek", "deepseek-chat")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SCOUT_LLM_AGENT_SCOUT_BACKEND": "Claude"}, ("claude", None)),
        ({"SCOUT_LLM_AGENT_SCOUT_MODEL": "gpt-4o-mini", "SCOUT_LLM_DEFAULT_BACKEND": "openai"}, (None, "gpt-4o-mini")),
        ({"SCOUT_LLM_AGENT_SCOUT__BACKEND": "claude"}, ("claude", None)),  # the original's double underscore
    ],
)
def test_rule3_either_half_of_an_agent_route_applies(
    configure: Configure, env: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    agent = routed_agent(configure, **env)
    assert agent._resolve_backend_and_model(None, None) == expected


def test_rule4_global_default_beats_preferred(configure: Configure) -> None:
    agent = routed_agent(configure, SCOUT_LLM_DEFAULT_BACKEND="OpenAI", SCOUT_LLM_DEFAULT_MODEL="gpt-4o")
    assert agent._resolve_backend_and_model(None, None) == ("openai", "gpt-4o")
    agent = routed_agent(configure, SCOUT_LLM_DEFAULT_BACKEND="", SCOUT_LLM_DEFAULT_MODEL="only-model")
    assert agent._resolve_backend_and_model(None, None) == (None, "only-model")


def test_rule5_preferred_backend(configure: Configure) -> None:
    agent = routed_agent(configure, SCOUT_LLM_AGENT_OTHER_BACKEND="claude")  # another agent's route: ignored
    assert agent._resolve_backend_and_model(None, None) == ("gemini", None)
    assert agent._resolve_backend_and_model("unlisted_task", None) == ("gemini", None)
    agent.set_preferred_backend(LLMBackendType.DEEPSEEK)
    assert agent.preferred_backend == "deepseek"
    assert agent._resolve_backend_and_model(None, None) == ("deepseek", None)


def test_rule6_nothing_means_the_manager_default() -> None:
    agent = Agent("scout_agent")
    agent.preferred_backend = None
    assert agent._resolve_backend_and_model(None, None) == (None, None)


@pytest.mark.parametrize(
    ("name", "variable"),
    [("validator_agent", "SCOUT_LLM_AGENT_VALIDATOR_BACKEND"),
     ("gap_finder_agent", "SCOUT_LLM_AGENT_GAP_FINDER_BACKEND"),
     ("scout_agent", "SCOUT_LLM_AGENT_SCOUT_BACKEND"), ("screener", "SCOUT_LLM_AGENT_SCREENER_BACKEND")],
)
def test_documented_agent_variables_match(configure: Configure, name: str, variable: str) -> None:
    configure(**{variable: "ollama"})
    assert Agent(name)._resolve_backend_and_model(None, None) == ("ollama", None)


def test_the_agent_key_is_read_at_call_time(configure: Configure) -> None:
    configure(SCOUT_LLM_AGENT_VALIDATOR_BACKEND="claude")
    agent = Agent("validator_draft", preferred_backend="ollama")
    assert agent._resolve_backend_and_model(None, None) == ("ollama", None)
    agent.name = "validator_agent"
    assert agent._resolve_backend_and_model(None, None) == ("claude", None)


def test_enum_preferences_are_stored_as_strings() -> None:
    agent = Agent("screener")
    agent.task_backend_preferences = {"default": LLMBackendType.OLLAMA, "other": "Claude"}
    assert agent.task_backend_preferences == {"default": "ollama", "other": "claude"}
    assert all(type(value) is str for value in agent.task_backend_preferences.values())
    assert type(agent.task_backend_preferences) is dict
    agent.set_task_backend("x", LLMBackendType.GEMINI)
    agent.preferred_backend = LLMBackendType.DEEPSEEK  # type: ignore[assignment]
    assert type(agent.task_backend_preferences["x"]) is str and agent.task_backend_preferences["x"] == "gemini"
    assert type(agent.preferred_backend) is str and agent.preferred_backend == "deepseek"
    assert agent._resolve_backend_and_model("default", None) == ("ollama", None)


# -- cooperative construction ---------------------------------------------------------------------------------------


def test_cooperative_super_init_initialises_the_mixin() -> None:
    agent = Agent("optimizer", preferred_backend="claude")
    agent.set_task_backend("simple_query", "gemini")  # the original raised AttributeError here
    assert agent.task_backend_preferences == {"simple_query": "gemini"}
    assert agent.preferred_backend == "claude" and agent._llm_manager is None
    assert agent.llm_logger.name == "llm.agent.optimizer"


def test_explicit_double_init_style() -> None:
    class Explicit(Agent):
        def __init__(self) -> None:
            BaseAgent.__init__(self, name="gap_finder")
            LLMAgentMixin.__init__(self, preferred_backend="ollama")

    agent = Explicit()
    assert agent.name == "gap_finder" and agent.preferred_backend == "ollama"
    assert agent.task_backend_preferences == {}


def test_mixin_first_order_in_both_styles() -> None:
    class MixinFirst(LLMAgentMixin, BaseAgent):
        async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
            return {}

        async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
            return {}

        async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
            return None

    cooperative = MixinFirst(name="research", preferred_backend="ollama")
    assert cooperative.name == "research" and cooperative.preferred_backend == "ollama"

    explicit = MixinFirst.__new__(MixinFirst)
    BaseAgent.__init__(explicit, name="research")
    agent_id = explicit.agent_id
    LLMAgentMixin.__init__(explicit, preferred_backend=None)
    assert explicit.agent_id == agent_id  # BaseAgent was not initialised twice
    assert explicit.preferred_backend == "openai" and explicit.task_backend_preferences == ANALYSIS_TASKS


def test_mixin_only_classes_need_no_init() -> None:
    class WithSuper(LLMAgentMixin):
        def __init__(self) -> None:
            super().__init__()

    for agent in (MixinOnly(), WithSuper()):
        assert agent.preferred_backend == "openai" and agent.task_backend_preferences == {}
        assert agent.get_llm_status() == {"status": "not_initialized", "backends": []}


def test_unknown_keyword_arguments_are_not_swallowed() -> None:
    with pytest.raises(TypeError):
        Agent("x", prefered_backend="claude")


# -- against real backends -----------------------------------------------------------------------------------------


async def test_prompt_type_is_checked_before_any_network_work(global_manager: None) -> None:
    agent = Agent("checker")
    with pytest.raises(LLMValidationError, match="Prompt must be string or AgentPrompt") as caught:
        await agent.llm_generate(123)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    with pytest.raises(LLMValidationError):
        async for _ in agent.llm_stream_generate(["not", "a", "prompt"]):  # type: ignore[arg-type]
            pass
    assert agent._llm_manager is None  # no manager fetched, no backend initialised
    assert get_llm_manager().get_available_backends() == []


async def test_injected_empty_manager_is_used_as_is(global_manager: None, configure: Configure,
                                                    openai_fake: FakeOpenAI) -> None:
    configure(SCOUT_OPENAI_API_KEY="sk-test-openai", SCOUT_OPENAI_BASE_URL=openai_fake.base_url,
              SCOUT_OLLAMA_ENABLED="false")
    agent = Agent("injected")
    empty = quiet_manager()
    agent._llm_manager = empty
    with pytest.raises(LLMError, match="No LLM backends available"):
        await agent.llm_generate("hi")
    assert agent._llm_manager is empty
    assert get_llm_manager().get_available_backends() == []  # the global manager was not initialised
    assert openai_fake.requests == []


def scenario_agent(configure: Configure, scenario: str) -> tuple[Agent, str | None]:
    """(agent, task type) for one routing rule, on a manager with `openai` (default) and `deepseek`."""
    configure(**{
        "agent_config": {"SCOUT_LLM_AGENT_ROUTED_BACKEND": "deepseek"},
        "default_config": {"SCOUT_LLM_DEFAULT_BACKEND": "deepseek"},
    }.get(scenario, {}))
    name = "code_bot" if scenario == "name_default" else "routed"  # "code" -> deepseek (contract 3.5)
    agent = Agent(name, preferred_backend="deepseek" if scenario == "preferred" else None)
    if scenario == "task":
        agent.set_task_backend("summarise", "deepseek")
    if scenario == "manager_default":
        agent.preferred_backend = None
    return agent, "summarise" if scenario == "task" else None


@pytest.mark.parametrize("scenario", ["task", "agent_config", "default_config", "preferred", "manager_default",
                                      "name_default"])
async def test_get_optimal_backend_names_the_backend_llm_generate_uses(
    configure: Configure, scenario: str, two_backends: LLMManager, openai_fake: FakeOpenAI,
    deepseek_fake: FakeOpenAI,
) -> None:
    agent, task = scenario_agent(configure, scenario)
    agent._llm_manager = two_backends
    expected = agent.get_optimal_backend(task)
    assert expected == ("openai" if scenario == "manager_default" else "deepseek")
    assert await agent.llm_generate("route me", task_type=task) == "echo: route me"
    served = {"openai": len(chat_requests(openai_fake.requests)),
              "deepseek": len(chat_requests(deepseek_fake.requests))}
    assert served == {name: int(name == expected) for name in served}


async def test_a_preference_for_a_missing_backend_yields_to_the_manager_default(
    manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    writer = Agent("writer")  # name default: claude, which this manager does not have
    writer._llm_manager = manager
    assert writer.get_optimal_backend("creative_writing") == "openai"
    assert await writer.llm_generate("draft", task_type="creative_writing") == "echo: draft"
    preferring = Agent("writer", preferred_backend="claude")  # a preference too, not a demand
    preferring._llm_manager = manager
    preferring.set_task_backend("code_generation", "deepseek")
    assert await preferring.llm_generate("draft") == "echo: draft"
    assert await preferring.llm_generate("code", task_type="code_generation") == "echo: code"
    with pytest.raises(LLMError, match="Backend not available: claude"):  # only an explicit choice insists
        await preferring.llm_generate("draft", backend_type="claude")
    assert len(chat_requests(openai_fake.requests)) == 3


async def test_get_llm_status_after_first_use(manager: LLMManager) -> None:
    agent = Agent("status")
    agent._llm_manager = manager
    status = agent.get_llm_status()
    assert status["status"] == "initialized"
    assert status["backends"] == ["openai"] and status["default_backend"] == "openai"
    assert status["healthy_backends"] == ["openai"]
    assert status["health_status"]["openai"].is_healthy is True


# -- aliases ----------------------------------------------------------------------------------------------------------


def answering(backend_type: LLMBackendType) -> Mock:
    """A backend registered under `backend_type`'s name that answers with that name."""
    backend = Mock()
    backend.config = LLMConfig(backend_type=backend_type, model_name="m", api_key="test-key")
    backend.initialize = AsyncMock(return_value=True)
    backend.generate = AsyncMock(return_value=LLMResponse(
        content=f"from {backend_type.value}", model="m", backend_type=backend_type.value, usage={}, metadata={},
        success=True))
    backend.health_check = AsyncMock(return_value=True)
    backend.cleanup = AsyncMock()
    return backend


async def test_a_preference_by_vendor_name_is_answered_by_that_backend() -> None:
    manager = quiet_manager()
    for backend_type in (LLMBackendType.OPENAI, LLMBackendType.CLAUDE, LLMBackendType.GEMINI):
        assert await manager.register_backend(answering(backend_type))
    assert manager.get_available_backends() == ["openai", "claude", "gemini"]
    agent = Agent("routed", preferred_backend="anthropic")
    agent.set_task_backend("trends", "google")
    agent._llm_manager = manager
    assert agent.get_optimal_backend() == "claude" and agent.get_optimal_backend("trends") == "gemini"
    assert await agent.llm_generate("hello") == "from claude"
    assert await agent.llm_generate("hello", task_type="trends") == "from gemini"
    agent.task_backend_preferences = {"trends": "Anthropic"}
    assert await agent.llm_generate("hello", task_type="trends") == "from claude"
    await manager.cleanup()
