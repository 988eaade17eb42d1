"""BaseAgent (plan -> think -> act, failures reported with their text, cooperative init) and the agent registry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agents import AgentInput, AgentRegistry, BaseAgent, create_agent, get_agent_class, get_registry, register_agent
from agents.gap_finder import GapFinderAgent
from tests.agents.helpers import Configure


class Echo(BaseAgent):
    """Echoes its input."""

    def __init__(self, name: str = "echo", fail_in: str | None = None) -> None:
        super().__init__(name=name)
        self.fail_in = fail_in
        self.seen: list[str] = []

    async def _step(self, stage: str) -> None:
        self.seen.append(self.state.status)
        if self.fail_in == stage:
            raise RuntimeError(f"{stage} broke")

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        await self._step("plan")
        return {"steps": ["echo"]}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        await self._step("think")
        return {"plan_seen": plan["steps"]}

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
        await self._step("act")
        self.log("acted", level="debug")
        return {"echo": agent_input.data, "thoughts": thoughts}


class NoNameAgent(Echo):
    def __init__(self) -> None:
        super().__init__(name="fixed")


async def test_execute_runs_the_three_steps_in_order() -> None:
    agent = Echo()
    output = await agent.execute(AgentInput(data="hi", metadata={"source": "test"}))
    assert output.success and output.error is None
    assert output.result == {"echo": "hi", "thoughts": {"plan_seen": ["echo"]}}
    assert agent.seen == ["planning", "thinking", "acting"] and agent.state.status == "completed"
    assert output.metadata == {"agent_id": agent.agent_id, "agent_name": "echo", "plan": {"steps": ["echo"]},
                               "thoughts": {"plan_seen": ["echo"]}}
    assert output.logs[0]["message"] == "acted" and output.logs[0]["level"] == "debug"
    assert output.execution_time >= 0


@pytest.mark.parametrize("stage", ["plan", "think", "act"])
async def test_a_failing_step_is_reported_with_its_text(stage: str) -> None:
    agent = Echo(fail_in=stage)
    output = await agent.execute(AgentInput(data="hi", metadata={}))
    assert not output.success and output.result is None
    assert output.error == f"RuntimeError: {stage} broke"
    assert agent.state.status == "failed"
    assert any(entry["level"] == "error" and f"{stage} broke" in entry["message"] for entry in output.logs)


def test_construction_touches_no_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    agent = Echo()
    assert os.listdir(tmp_path) == []
    assert agent.state.max_iterations == 10 and agent.state.status == "idle"
    assert str(agent) == f"Echo(name='echo', id='{agent.agent_id}', status='idle')"
    with pytest.raises(TypeError, match="needs a name"):
        BaseAgent.__init__(Echo.__new__(Echo))


def test_state_round_trip_keeps_secrets_masked(configure: Configure, tmp_path: Path) -> None:
    configure(SCOUT_OPENAI_API_KEY="sk-canary-secret", SCOUT_AGENT_MAX_ITERATIONS="4")
    agent = Echo()
    assert agent.state.max_iterations == 4
    agent.log("note")
    path = tmp_path / "state.json"
    agent.save_state(path)
    assert "sk-canary-secret" not in path.read_text()
    saved = json.loads(path.read_text())
    assert saved["state"]["name"] == "echo" and saved["execution_logs"][0]["message"] == "note"
    agent.reset()
    assert agent.execution_logs == [] and agent.state.status == "idle"
    agent.load_state(path)
    assert agent.execution_logs[0]["message"] == "note" and agent.get_state()["max_iterations"] == 4


def test_registry_creates_agents_with_or_without_a_name_parameter() -> None:
    registry = AgentRegistry()
    registry.register_agent(Echo)
    registry.register_agent(GapFinderAgent, name="gaps")
    assert registry.get_agent_class("echo") is Echo and registry.get_agent_class("gapfinder") is GapFinderAgent
    echo = registry.create_agent("Echo")
    assert isinstance(echo, Echo) and echo.name == "Echo"
    gaps = registry.create_agent("gaps")
    assert isinstance(gaps, GapFinderAgent) and gaps.name == "gaps"
    no_name = AgentRegistry()
    no_name.register_agent(NoNameAgent)
    assert no_name.create_agent("nonameagent").name == "fixed"  # no name= forced on a constructor without one
    assert registry.list_instances() == [echo.agent_id, gaps.agent_id]
    assert registry.get_agent(gaps.agent_id) is gaps and registry.remove_agent(gaps.agent_id)
    assert registry.get_agent_info("echo") == {"name": "Echo", "module": __name__, "description": "Echoes its input."}
    with pytest.raises(KeyError, match="No agent registered as 'missing'"):
        registry.create_agent("missing")


def test_module_helpers_use_the_global_registry() -> None:
    @register_agent
    class PingAgent(Echo):
        pass

    try:
        assert get_agent_class("ping") is PingAgent
        assert isinstance(create_agent("PingAgent"), PingAgent)
    finally:
        get_registry()._classes.pop("PingAgent")
        get_registry()._classes.pop("ping")
        get_registry().clear_instances()
