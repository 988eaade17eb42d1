"""Agents built on scout-llm: the `BaseAgent` plan/think/act skeleton, its registry, and the market gap finders.

    from agents import BaseAgent, AgentInput
    from agents.gap_finder import GapFinderAgent, GapFinderInput              # rule-based, no LLM
    from agents.gap_finder_enhanced import EnhancedGapFinderAgent             # LLM-driven, rule-based fallback

Prompts ship inside the package in `agents/prompts/<agent>/<stage>.prompt`; importing the package registers that
folder as a prompt root (`llm.prompts.register_prompt_root`), searched after the configured ones.
"""

from __future__ import annotations

from pathlib import Path

from agents.base import (
    AgentInput,
    AgentOutput,
    AgentRegistry,
    AgentState,
    BaseAgent,
    create_agent,
    get_agent_class,
    get_registry,
    register_agent,
)
from llm.prompts import register_prompt_root

#: The prompts this package ships.
PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
register_prompt_root(PROMPTS_DIR)

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
