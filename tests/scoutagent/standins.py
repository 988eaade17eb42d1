"""Stand-ins written after ScoutAgent's classes (not copied): its `BaseAgent` requires `name` and never calls
`super().__init__()`, so a mixin after it in the MRO is never initialised by it."""

from __future__ import annotations

import logging
import uuid
from typing import Any


class ScoutBaseAgent:
    """ScoutAgent's BaseAgent shape: `__init__(self, name, agent_id=None, config=None)`, no `super().__init__()`."""

    inits = 0  # how many times __init__ ran, over all instances (reset by the tests)

    def __init__(self, name: str, agent_id: str | None = None, config: Any | None = None) -> None:
        ScoutBaseAgent.inits += 1
        self.name = name
        self.agent_id = agent_id or str(uuid.uuid4())
        self.config = config
        self.logger = logging.getLogger(f"agent.{name}")
        self.execution_logs: list[dict[str, Any]] = []

    async def plan(self, agent_input: Any) -> dict[str, Any]:
        return {}

    async def think(self, agent_input: Any, plan: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def act(self, agent_input: Any, plan: dict[str, Any], thoughts: dict[str, Any]) -> Any:
        return None
