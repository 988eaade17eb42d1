"""LLMAgentMixin calls and the module helpers, through a real manager and OpenAI backend against the fake server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from llm.base import LLMBackend, LLMBackendType, LLMConfig, LLMRequest, LLMResponse
from llm.errors import (
    LLMAuthenticationError,
    LLMBackendError,
    LLMError,
    LLMStructuredOutputError,
    LLMValidationError,
)
from llm.manager import LLMManager, get_llm_manager
from llm.utils import AgentPrompt, LLMAgentMixin, TextInsights, llm_classify, llm_summarize, quick_llm_generate
from tests.agents.conftest import openai_backend, quiet_manager
from tests.agents.helpers import Configure, chat_requests, completion_reply
from tests.fakes.openai_fake import API_KEY, FakeOpenAI
from tests.fakes.server import Reply


class Caller(LLMAgentMixin):
    def __init__(self, manager: LLMManager | None = None, name: str = "calls") -> None:
        self.name = name
        super().__init__()
        if manager is not None:
            self._llm_manager = manager


def whole_json(reply: str) -> bool:
    """Whether a reply is one JSON value as a whole: only that is an answer to a native schema (a fenced or embedded
    one is sent back for repair, and the agent then reads the raw text leniently)."""
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True


def last_body(server: FakeOpenAI) -> dict[str, Any]:
    body: dict[str, Any] = chat_requests(server.requests)[-1].body
    return body


async def test_llm_generate_sends_the_prompt_and_settings(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    prompt = AgentPrompt(system_prompt="Be brief.", user_prompt="What is AI?",
                         examples=[{"user": "What is ML?", "assistant": "Learning from data."}])
    answer = await Caller(manager).llm_generate(prompt, temperature=0.0, max_tokens=64, top_p=0.5)
    assert answer == "echo: What is AI?"
    body = last_body(openai_fake)
    assert body["messages"] == prompt.to_messages()
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64 and body["top_p"] == 0.5
    assert body["model"] == "gpt-4.1-mini"


async def test_config_model_route_and_the_callers_own_override(
    configure: Configure, manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    configure(SCOUT_LLM_AGENT_CALLS_MODEL="gpt-4o")
    agent = Caller(manager)
    await agent.llm_generate("routed model")
    assert last_body(openai_fake)["model"] == "gpt-4o"
    await agent.llm_generate("my model", model_name_override="gpt-4o-mini")
    assert last_body(openai_fake)["model"] == "gpt-4o-mini"


async def test_llm_stream_generate_yields_text_chunks(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    chunks = [chunk async for chunk in Caller(manager).llm_stream_generate("stream these words", max_tokens=20)]
    assert len(chunks) > 1 and all(isinstance(chunk, str) for chunk in chunks)
    assert "".join(chunks) == "echo: stream these words"
    assert last_body(openai_fake)["stream"] is True


async def test_llm_stream_generate_can_stop_early(manager: LLMManager) -> None:
    stream = Caller(manager).llm_stream_generate("one two three four")
    first = await anext(stream)
    await stream.aclose()
    assert first == "echo:"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('```json\n{"key_findings": ["a"], "summary": "s", "confidence": 0.9, "details": {"x": {"y": 1}}}\n```',
         {"analysis_type": "sentiment", "key_findings": ["a"], "summary": "s", "confidence": 0.9,
          "details": {"x": {"y": 1}}}),
        ('Here: {"analysis_type": "custom", "summary": "kept"} done',
         {"analysis_type": "custom", "summary": "kept"}),
        ('["finding one", "finding two"]',
         {"analysis_type": "sentiment", "key_findings": ["finding one", "finding two"], "summary": "",
          "confidence": 0.5, "raw_response": '["finding one", "finding two"]'}),
        ("The tone is upbeat.",
         {"analysis_type": "sentiment", "key_findings": [], "summary": "The tone is upbeat.", "confidence": 0.5,
          "raw_response": "The tone is upbeat."}),
    ],
)
async def test_llm_analyze_text_always_returns_a_dict(
    manager: LLMManager, openai_fake: FakeOpenAI, reply: str, expected: dict[str, Any]
) -> None:
    openai_fake.enqueue(completion_reply(reply))
    openai_fake.enqueue(completion_reply(reply))  # prose is sent back once for repair; the model repeats it
    result = await Caller(manager).llm_analyze_text("Great product!", analysis_type="sentiment", context="reviews")
    assert result == expected
    first = chat_requests(openai_fake.requests)[0].body
    assert first["response_format"]["json_schema"]["name"] == "TextAnalysis"  # structured output, natively
    assert len(chat_requests(openai_fake.requests)) == (1 if whole_json(reply) else 2)  # else one repair
    messages = last_body(openai_fake)["messages"]
    assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]
    assert "Great product!" in messages[1]["content"] and "Additional context:\nreviews" in messages[1]["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["Raise prices", "Target SMBs"]', ["Raise prices", "Target SMBs"]),
        ('```json\n{"insights": ["Raise prices", {"insight": "Target SMBs"}]}\n```', ["Raise prices", "Target SMBs"]),
        ("Key insights:\n- Raise prices\n- Target SMBs", ["Key insights:", "Raise prices", "Target SMBs"]),
        ('{"note": "no list here"}', ["no list here"]),
    ],
)
async def test_llm_extract_insights_always_returns_strings(
    manager: LLMManager, openai_fake: FakeOpenAI, reply: str, expected: list[str]
) -> None:
    openai_fake.enqueue(completion_reply(reply))
    openai_fake.enqueue(completion_reply(reply))  # prose is sent back once for repair; the model repeats it
    data = {"revenue": [1, 2], "churn": 0.1}
    assert await Caller(manager).llm_extract_insights(data, insight_type="business") == expected
    assert chat_requests(openai_fake.requests)[0].body["response_format"]["json_schema"]["name"] == "TextInsights"
    assert len(chat_requests(openai_fake.requests)) == (1 if whole_json(reply) else 2)  # else one repair
    assert json.dumps(data, indent=2) in last_body(openai_fake)["messages"][1]["content"]


async def test_a_failed_call_raises_the_typed_error(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Reply(status=401, body={"error": {"message": "bad key", "type": "invalid_request_error",
                                                          "code": "invalid_api_key", "param": None}}))
    with pytest.raises(LLMAuthenticationError) as caught:
        await Caller(manager).llm_generate("hi")
    assert caught.value.status_code == 401 and isinstance(caught.value, LLMError)
    assert len(chat_requests(openai_fake.requests)) == 1


class FlaggedFailureBackend(LLMBackend):
    """A custom backend in the original style: it reports failure with `success=False` instead of raising."""

    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response("", self.config.model_name, success=False, error="quota gone")

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        yield "unused"

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return []


async def test_a_response_flagged_as_failed_raises_an_llm_error() -> None:
    async with quiet_manager() as manager:
        await manager.register_backend(FlaggedFailureBackend(LLMConfig(LLMBackendType.OLLAMA, "custom")))
        with pytest.raises(LLMBackendError, match="LLM generation failed: quota gone"):
            await Caller(manager).llm_generate("hi")


async def test_overrides_and_instance_patches_are_honoured_by_the_helpers(
    manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    seen: list[dict[str, Any]] = []

    class Writer(Caller):
        async def llm_generate(self, prompt: Any, task_type: str | None = "default", **kwargs: Any) -> str:
            seen.append({"task_type": task_type, **kwargs})
            return await super().llm_generate(prompt, task_type=task_type, **kwargs)

    writer = Writer(manager)
    openai_fake.enqueue(completion_reply('["x"]'))
    assert await writer.llm_extract_insights("data") == ["x"]
    assert seen == [{"task_type": "default", "backend_type": None, "response_format": TextInsights}]

    patched = Caller(manager)
    original = patched.llm_generate

    async def forced(prompt: Any, **kwargs: Any) -> str:
        return await original(prompt, **{**kwargs, "backend_type": "openai"})

    patched.llm_generate = forced  # type: ignore[method-assign]
    openai_fake.enqueue(completion_reply('{"summary": "ok"}'))
    assert (await patched.llm_analyze_text("t"))["summary"] == "ok"


# -- the global manager and the module helpers ---------------------------------------------------------------------


async def test_first_use_initialises_the_global_manager_once(
    configure: Configure, global_manager: None, openai_fake: FakeOpenAI
) -> None:
    configure(SCOUT_OPENAI_API_KEY=API_KEY, SCOUT_OPENAI_BASE_URL=openai_fake.base_url, SCOUT_OLLAMA_ENABLED="false",
              SCOUT_LLM_RETRY_ATTEMPTS="1", SCOUT_LLM_TIMEOUT="5")
    agents = [Caller(name=f"agent{i}") for i in range(5)]
    answers = await asyncio.gather(*(agent.llm_generate(f"q{i}") for i, agent in enumerate(agents)))
    assert answers == [f"echo: q{i}" for i in range(5)]
    manager = get_llm_manager()
    assert all(agent._llm_manager is manager for agent in agents)
    assert manager.get_available_backends() == ["openai"]
    assert len(chat_requests(openai_fake.requests)) == 5
    assert agents[0].get_llm_status()["backends"] == ["openai"]


@pytest.fixture
async def global_openai(global_manager: None, openai_fake: FakeOpenAI) -> FakeOpenAI:
    """The global manager with the fake OpenAI server registered as its only backend."""
    assert await get_llm_manager().register_backend(openai_backend(openai_fake))
    return openai_fake


async def test_quick_llm_generate(global_openai: FakeOpenAI) -> None:
    assert await quick_llm_generate("Summarize AI", temperature=0.3, max_tokens=200) == "echo: Summarize AI"
    body = last_body(global_openai)
    assert body["messages"] == [{"role": "user", "content": "Summarize AI"}]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 200
    with pytest.raises(LLMError, match="Backend not available: claude"):
        await quick_llm_generate("x", backend_type="claude")
    with pytest.raises(LLMValidationError):
        await quick_llm_generate(None)  # type: ignore[arg-type]
    assert len(chat_requests(global_openai.requests)) == 1


async def test_llm_summarize(global_openai: FakeOpenAI) -> None:
    global_openai.enqueue(completion_reply("  A short summary.  "))
    assert await llm_summarize("long text " * 20, max_length=30) == "A short summary."
    body = last_body(global_openai)
    assert body["temperature"] == 0.3 and body["max_tokens"] == 60
    assert "approximately 30 words" in body["messages"][0]["content"]


async def test_llm_classify_picks_the_best_match(global_openai: FakeOpenAI) -> None:
    global_openai.enqueue(completion_reply("Category: smart home"))
    assert await llm_classify("A thermostat app", ["home", "smart home", "finance"]) == "smart home"
    body = last_body(global_openai)
    assert body["temperature"] == 0.1 and body["max_tokens"] == 50
    assert "home, smart home, finance" in body["messages"][0]["content"]
    assert await llm_classify("anything", []) == "unknown"
    assert len(chat_requests(global_openai.requests)) == 1


async def test_seed_readme_agent_snippets(global_openai: FakeOpenAI) -> None:
    from agents.base import AgentInput, BaseAgent
    from llm.utils import AgentPromptTemplates

    # "Agent Integration" and "Text Analysis", as the seed README writes them.
    class MyEnhancedAgent(BaseAgent, LLMAgentMixin):
        async def plan(self, agent_input: Any) -> dict[str, Any]:
            plan_prompt = f"Create a plan for: {agent_input.data}"
            plan = await self.llm_generate(plan_prompt)
            return {"plan": plan}

        async def think(self, agent_input: Any, plan: Any) -> Any:
            analysis = await self.llm_analyze_text(str(agent_input.data), analysis_type="strategic")
            return analysis

        async def act(self, agent_input: Any, plan: Any, thoughts: Any) -> Any:
            action_prompt = f"Based on plan: {plan} and analysis: {thoughts}, what actions should be taken?"
            actions = await self.llm_generate(action_prompt)
            return {"actions": actions}

    class AnalysisAgent(LLMAgentMixin):
        async def analyze_sentiment(self, text: str) -> dict[str, Any]:
            return await self.llm_analyze_text(text, analysis_type="sentiment")

        async def extract_insights(self, data: Any) -> list[str]:
            return await self.llm_extract_insights(data, insight_type="business")

    output = await MyEnhancedAgent(name="my_agent").execute(AgentInput(data="launch a bakery", metadata={}))
    assert output.success, output.error
    assert output.result["actions"].startswith("echo: Based on plan:")
    assert (await AnalysisAgent().analyze_sentiment("I love it"))["analysis_type"] == "sentiment"
    assert await AnalysisAgent().extract_insights({"sales": 3}) != []
    prompt = AgentPromptTemplates.market_analysis(pain_points=["Manual processes", "High costs"],
                                                  market_context="SaaS industry")
    response = await get_llm_manager().generate(LLMRequest(messages=prompt.to_messages()))
    assert response.content.startswith("echo: Analyze the following pain points")


# -- structured output -----------------------------------------------------------------------------------------------


class Verdict(BaseModel):
    label: Literal["good", "bad"]
    score: int


async def test_llm_generate_structured_returns_the_validated_model(manager: LLMManager,
                                                                   openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(completion_reply('{"label": "good", "score": 3}'))
    verdict = await Caller(manager).llm_generate_structured("Judge this.", Verdict)
    assert verdict == Verdict(label="good", score=3)
    body = chat_requests(openai_fake.requests)[0].body
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == ["good", "bad"]


async def test_llm_generate_structured_raises_the_typed_error_after_one_repair(manager: LLMManager,
                                                                               openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(completion_reply('{"label": "meh", "score": 3}'))
    openai_fake.enqueue(completion_reply('{"label": "so-so", "score": 3}'))
    with pytest.raises(LLMStructuredOutputError) as caught:
        await Caller(manager).llm_generate_structured("Judge this.", Verdict)
    assert caught.value.raw_text == '{"label": "so-so", "score": 3}' and "label" in caught.value.errors[0]
    assert len(chat_requests(openai_fake.requests)) == 2


class PlainTextBackend(FlaggedFailureBackend):
    """A custom backend that knows nothing of `response_format`: it answers a fixed text."""

    answer = '{"label": "bad", "score": 1}'

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response(self.answer, self.config.model_name)


async def test_llm_generate_structured_validates_a_custom_backends_plain_answer() -> None:
    async with quiet_manager() as manager:
        backend = PlainTextBackend(LLMConfig(LLMBackendType.OLLAMA, "custom"))
        await manager.register_backend(backend)
        assert await Caller(manager).llm_generate_structured("Judge.", Verdict) == Verdict(label="bad", score=1)
        backend.answer = "no idea"
        with pytest.raises(LLMStructuredOutputError):
            await Caller(manager).llm_generate_structured("Judge.", Verdict)
