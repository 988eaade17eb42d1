"""The agent side of scout-llm, at its documented import path: `LLMAgentMixin` (`llm.agent.mixin`), the one-shot
helpers `quick_llm_generate`, `llm_summarize`, `llm_classify` (`llm.agent.calls`), the prompt helpers (`llm.prompts`)
and the lenient reply readers (`llm.output.lenient`). Behaviour: README "Agents"."""

from __future__ import annotations

from llm.agent.analysis import TextAnalysis, TextInsights
from llm.agent.calls import backend_name, llm_classify, llm_summarize, quick_llm_generate, shared_llm_manager
from llm.agent.mixin import LLMAgentMixin
from llm.output.lenient import best_category, extract_json, to_string_list
from llm.prompts import (
    AgentPrompt,
    AgentPromptTemplates,
    PromptNotFoundError,
    PromptPlaceholderError,
    load_prompt_template,
    register_prompt_root,
)

__all__ = [
    "AgentPrompt",
    "AgentPromptTemplates",
    "LLMAgentMixin",
    "PromptNotFoundError",
    "PromptPlaceholderError",
    "TextAnalysis",
    "TextInsights",
    "backend_name",
    "best_category",
    "extract_json",
    "llm_classify",
    "llm_summarize",
    "load_prompt_template",
    "quick_llm_generate",
    "register_prompt_root",
    "shared_llm_manager",
    "to_string_list",
]
