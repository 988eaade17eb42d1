"""The agent base class: plan -> think -> act, with state, logs and a registry of agent classes.

    class EchoAgent(BaseAgent):
        async def plan(self, agent_input):  return {"steps": ["echo"]}
        async def think(self, agent_input, plan):  return {"ok": True}
        async def act(self, agent_input, plan, thoughts):  return agent_input.data

    output = await EchoAgent(name="echo").execute(AgentInput(data="hi", metadata={}))
    output.success, output.result        # True, "hi"

`BaseAgent.__init__` is cooperative (it calls `super().__init__(**kwargs)`), so `class X(BaseAgent, LLMAgentMixin)`
initialises the mixin through `super().__init__(name=...)`. Nothing here touches the file system on construction.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from llm.config import get_config
from llm.core.secrets import redact, redact_json

__all__ = [
    "AgentInput",
    "AgentOutput",
    "AgentRegistry",
    "AgentState",
    "BaseAgent",
    "create_agent",
    "get_agent_class",
    "get_registry",
    "register_agent",
]

STATUSES = ("idle", "planning", "thinking", "acting", "completed", "failed")
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
              "error": logging.ERROR, "critical": logging.CRITICAL}


@dataclass
class AgentInput:
    """What an agent works on. Subclasses may add fields with defaults."""

    data: Any
    metadata: dict[str, Any]
    context: dict[str, Any] | None = None


@dataclass
class AgentOutput:
    """What `execute` returns. On failure `success` is False and `error` holds the error text."""

    result: Any
    metadata: dict[str, Any]
    logs: list[Any]
    execution_time: float
    success: bool = True
    error: str | None = None


@dataclass
class AgentState:
    """An agent's progress. Not frozen and without slots: agents attach `state.plan` and `state.thoughts`."""

    agent_id: str
    name: str
    status: str
    iteration: int
    max_iterations: int
    start_time: float
    last_update: float
    memory: dict[str, Any] = field(default_factory=dict)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _config_dict(config: Any) -> Any:
    """A JSON-safe view of a config object (pydantic model or dataclass); secrets stay masked: keys, and the
    passwords of URLs (`redact_json` over every string)."""
    if hasattr(config, "model_dump"):
        return redact_json(config.model_dump(mode="json"))
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return redact_json(asdict(config))
    return redact(repr(config))


class BaseAgent(ABC):
    """An agent that plans, thinks and acts. Subclasses implement the three async steps.

    Attributes:
        name, agent_id, config: identity and settings (`config` defaults to `llm.config.get_config()`).
        logger: `logging.getLogger("agent.<name>")`.
        state: an `AgentState`.
        execution_logs: the `log()` entries, `{"timestamp", "level", "message"}` dicts.
    """

    def __init__(self, name: str | None = None, agent_id: str | None = None, config: Any | None = None,
                 **kwargs: Any) -> None:
        if name is None:
            if "state" in self.__dict__:  # initialised already; a mixin's explicit __init__ reached us again
                super().__init__(**kwargs)
                return
            raise TypeError(f"{type(self).__name__} needs a name")
        self.name = name
        self.agent_id = agent_id or str(uuid.uuid4())
        self.config = config if config is not None else get_config()
        self.logger = logging.getLogger(f"agent.{name}")
        now = time.time()
        max_iterations = getattr(getattr(self.config, "agent", None), "max_iterations", 10)
        self.state = AgentState(self.agent_id, name, "idle", 0, max_iterations, now, now, {})
        self.execution_logs: list[dict[str, Any]] = []
        self.start_time: float | None = None
        super().__init__(**kwargs)

    # -- the three steps --------------------------------------------------------------------------------------

    @abstractmethod
    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        """Decide what to do."""

    @abstractmethod
    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        """Analyse the input along the plan."""

    @abstractmethod
    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
        """Produce the result."""

    async def execute(self, agent_input: AgentInput) -> AgentOutput:
        """Run plan, think and act. Never raises for a failing step: returns `success=False` with the error text."""
        self.start_time = time.perf_counter()
        self.state.iteration += 1
        try:
            self._update_status("planning")
            plan = await self.plan(agent_input)
            self._update_status("thinking")
            thoughts = await self.think(agent_input, plan)
            self._update_status("acting")
            result = await self.act(agent_input, plan, thoughts)
        except Exception as exc:  # reported in the output, with the error text, instead of raised
            self._update_status("failed")
            self.log(f"execution failed: {_error_text(exc)}", level="error")
            self.logger.error("%s failed", self.name, exc_info=True)
            return AgentOutput(
                result=None,
                metadata={"agent_id": self.agent_id, "agent_name": self.name},
                logs=list(self.execution_logs),
                execution_time=time.perf_counter() - self.start_time,
                success=False,
                error=_error_text(exc),
            )
        self._update_status("completed")
        return AgentOutput(
            result=result,
            metadata={"agent_id": self.agent_id, "agent_name": self.name, "plan": plan, "thoughts": thoughts},
            logs=list(self.execution_logs),
            execution_time=time.perf_counter() - self.start_time,
        )

    # -- state and logs ---------------------------------------------------------------------------------------

    def _update_status(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown agent status {status!r}; expected one of {', '.join(STATUSES)}")
        self.state.status = status
        self.state.last_update = time.time()

    def log(self, message: str, level: str = "info") -> None:
        """Record a message in `execution_logs` and send it to the agent's logger."""
        self.execution_logs.append({"timestamp": time.time(), "level": level, "message": message})
        self.logger.log(LOG_LEVELS.get(level.lower(), logging.INFO), message)

    def get_state(self) -> dict[str, Any]:
        """The state as a dict (dataclass fields only)."""
        return asdict(self.state)

    def save_state(self, path: str | Path) -> None:
        """Write the state, logs and config (secrets masked) to a JSON file."""
        payload = {"state": self.get_state(), "execution_logs": self.execution_logs,
                   "config": _config_dict(self.config)}
        Path(path).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")

    def load_state(self, path: str | Path) -> None:
        """Restore the state and logs written by `save_state`."""
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        self.state = AgentState(**payload["state"])
        self.execution_logs = list(payload.get("execution_logs", []))

    def reset(self) -> None:
        """Back to idle, with no logs and an empty memory."""
        now = time.time()
        self.state = AgentState(self.agent_id, self.name, "idle", 0, self.state.max_iterations, now, now, {})
        self.execution_logs = []
        self.start_time = None

    def __str__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, id={self.agent_id!r}, status={self.state.status!r})"

    __repr__ = __str__


AgentT = TypeVar("AgentT", bound=type[BaseAgent])


class AgentRegistry:
    """Agent classes by name (and a short alias), plus the instances created through it."""

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseAgent]] = {}
        self._instances: dict[str, BaseAgent] = {}

    @staticmethod
    def alias(class_name: str) -> str:
        """`GapFinderAgent` -> `gapfinder`."""
        return class_name.lower().replace("agent", "")

    def register_agent(self, agent_class: AgentT, name: str | None = None) -> AgentT:
        """Register a class under its name, its alias and `name` (if given); returns the class (decorator-friendly)."""
        for key in {agent_class.__name__, self.alias(agent_class.__name__), *([name] if name else [])}:
            self._classes[key] = agent_class
        return agent_class

    def get_agent_class(self, name: str) -> type[BaseAgent] | None:
        return self._classes.get(name) or self._classes.get(self.alias(name))

    def create_agent(self, name: str, **kwargs: Any) -> BaseAgent:
        """An instance of the class registered as `name`; `name=` is passed only to constructors that take it."""
        agent_class = self.get_agent_class(name)
        if agent_class is None:
            raise KeyError(f"No agent registered as {name!r}; known: {', '.join(sorted(self._classes)) or 'none'}")
        parameters = inspect.signature(agent_class).parameters
        if "name" in parameters and "name" not in kwargs:
            kwargs["name"] = name
        agent = agent_class(**kwargs)
        self._instances[agent.agent_id] = agent
        return agent

    def get_agent(self, agent_id: str) -> BaseAgent | None:
        return self._instances.get(agent_id)

    def list_agents(self) -> list[str]:
        return sorted(self._classes)

    def list_instances(self) -> list[str]:
        return list(self._instances)

    def remove_agent(self, agent_id: str) -> bool:
        return self._instances.pop(agent_id, None) is not None

    def clear_instances(self) -> None:
        self._instances.clear()

    def get_agent_info(self, name: str) -> dict[str, Any] | None:
        agent_class = self.get_agent_class(name)
        if agent_class is None:
            return None
        return {"name": agent_class.__name__, "module": agent_class.__module__,
                "description": inspect.getdoc(agent_class) or ""}


_registry = AgentRegistry()


def get_registry() -> AgentRegistry:
    """The process-wide registry."""
    return _registry


def register_agent(agent_class: AgentT, name: str | None = None) -> AgentT:
    """Register an agent class in the global registry (usable as a decorator)."""
    return _registry.register_agent(agent_class, name)


def create_agent(name: str, **kwargs: Any) -> BaseAgent:
    """Create an agent from the global registry."""
    return _registry.create_agent(name, **kwargs)


def get_agent_class(name: str) -> type[BaseAgent] | None:
    """The class registered under `name` (or its alias), or None."""
    return _registry.get_agent_class(name)
