"""Per-task backend routing: an agent sends each kind of task to the backend that suits it, and falls back to the
others when that backend is not configured.

Run: python examples/agent_backend_optimization_example.py     (exits non-zero if any step fails)

Each line shows the backend the routing chose and the backend and model that answered (`response.backend_type`,
`response.model`), which differ after a failover.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from typing import Any

from agents.base import AgentInput, BaseAgent
from llm import get_llm_manager
from llm.base import LLMRequest, LLMResponse
from llm.manager import initialize_llm_backends
from llm.utils import LLMAgentMixin

TASKS = {
    "simple_query": ("gemini", "In one sentence: what is a market gap?"),
    "code_generation": ("deepseek", "Write a Python one-liner that reverses a string."),
    "creative_writing": ("claude", "Write a two-line slogan for an inventory app."),
    "data_analysis": ("openai", "List two metrics that show product-market fit."),
}


class CodeOptimizedAgent(BaseAgent, LLMAgentMixin):
    """Routes each task type to a preferred backend with `set_task_backend`."""

    def __init__(self) -> None:
        super().__init__(name="code_optimized_agent")
        for task_type, (backend, _) in TASKS.items():
            self.set_task_backend(task_type, backend)

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        return {"tasks": list(TASKS)}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        return {"routing": {task: self.get_optimal_backend(task) for task in plan["tasks"]}}

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> dict[str, Any]:
        # `llm_generate(prompt, task_type=...)` routes the same way and returns the text only; the whole response
        # also says which backend and model answered.
        assert self._llm_manager is not None
        answers: dict[str, LLMResponse] = {}
        for task_type, (_, prompt) in TASKS.items():
            request = LLMRequest(messages=[{"role": "user", "content": prompt}], max_tokens=80)
            answers[task_type] = await self._llm_manager.generate(request, thoughts["routing"][task_type])
        return answers


async def main() -> int:
    await initialize_llm_backends()
    manager = get_llm_manager()
    available = manager.get_available_backends()
    if not available:
        print("No LLM backends available: set SCOUT_OPENAI_API_KEY (or another key) or start Ollama.",
              file=sys.stderr)
        return 3
    agent = CodeOptimizedAgent()
    agent._llm_manager = manager
    try:
        result = await agent.execute(AgentInput(data="route tasks", metadata={}))
        if not result.success:
            raise RuntimeError(result.error)
        print(f"configured backends: {', '.join(available)}")
        for task_type, routed in result.metadata["thoughts"]["routing"].items():
            preferred = TASKS[task_type][0]
            note = "" if routed == preferred else f" ({preferred} not configured)"
            response = result.result[task_type]
            answered = f"{'':>16}    answered by {response.backend_type} / {response.model}: "
            text = textwrap.shorten(" ".join(response.content.split()) or "(empty)", max(30, 116 - len(answered)),
                                    placeholder=" [...]")
            print(f"{task_type:>16} -> {routed}{note}\n{answered}{text}")
    except Exception as exc:  # the example reports any failure and exits non-zero
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await manager.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
