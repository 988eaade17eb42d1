"""Agents built on scout-llm: the `BaseAgent` plan/think/act skeleton, its registry, and the market gap finders.

    from agents import BaseAgent, AgentInput
    from agents.gap_finder import GapFinderAgent, GapFinderInput              # rule-based, no LLM
    from agents.gap_finder_enhanced import EnhancedGapFinderAgent             # LLM-driven, rule-based fallback

Prompts ship inside the package in `agents/prompts/<agent>/<stage>.prompt` (see `llm.prompts`).
"""

from __future__ import annotations

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
