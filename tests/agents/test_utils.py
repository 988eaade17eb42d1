"""Prompt helpers: AgentPrompt.to_messages and AgentPromptTemplates (prompt files: test_prompts.py)."""

from __future__ import annotations

import json

from llm.utils import AgentPrompt, AgentPromptTemplates

# -- AgentPrompt ------------------------------------------------------------------------------------------------


def test_to_messages_orders_system_examples_then_user() -> None:
    prompt = AgentPrompt(
        system_prompt="sys",
        user_prompt="question",
        examples=[{"user": "u1", "assistant": "a1"}, {"assistant": "a2"}, {"user": "u3"}],
    )
    assert prompt.to_messages() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "u3"},
        {"role": "user", "content": "question"},
    ]


def test_to_messages_without_system_prompt_or_examples() -> None:
    assert AgentPrompt(system_prompt="", user_prompt="hi").to_messages() == [{"role": "user", "content": "hi"}]
    messages = AgentPrompt(system_prompt="s", user_prompt="u").to_messages()
    assert [m["content"] for m in messages] == ["s", "u"]  # index 0 system, index 1 user (the example relies on it)


# -- templates ---------------------------------------------------------------------------------------------------


def test_market_analysis_template() -> None:
    prompt = AgentPromptTemplates.market_analysis(["Manual processes", "High costs"], "SaaS industry")
    assert prompt.context is None and prompt.examples is None
    assert prompt.system_prompt
    assert "Market Context: SaaS industry" in prompt.user_prompt
    assert "- Manual processes\n- High costs" in prompt.user_prompt
    assert [m["role"] for m in prompt.to_messages()] == ["system", "user"]


def test_solution_generation_template() -> None:
    prompt = AgentPromptTemplates.solution_generation("No tool for X", ["SMBs", "Freelancers"])
    assert "No tool for X" in prompt.user_prompt
    assert "SMBs, Freelancers" in prompt.user_prompt


def test_report_writing_template() -> None:
    data = {"gaps": [{"name": "a", "score": 80}]}
    prompt = AgentPromptTemplates.report_writing(data, "executive summary", "investors")
    assert "executive summary" in prompt.system_prompt and "investors" in prompt.system_prompt
    assert json.dumps(data, indent=2) in prompt.user_prompt
