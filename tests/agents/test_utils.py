"""Prompt helpers: AgentPrompt.to_messages, AgentPromptTemplates and load_prompt_template."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from llm.errors import LLMError
from llm.prompts import PACKAGE_PROMPTS_DIR
from llm.utils import AgentPrompt, AgentPromptTemplates, PromptPlaceholderError, load_prompt_template
from tests.agents.helpers import Configure

GAP_FINDER_KEYS = {
    "plan.prompt": {"pain_points_count", "market_context", "analysis_scope", "include_competitive_analysis",
                    "include_market_sizing"},
    "think.prompt": {"pain_points_count", "market_context", "analysis_scope", "pain_points_sample"},
    "act.prompt": {"market_themes_count", "pain_points_count", "market_context", "analysis_scope",
                   "include_competitive_analysis", "include_market_sizing", "market_themes_sample"},
}


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


# -- load_prompt_template ----------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_prompts_ship_inside_the_agents_package() -> None:
    shipped = resources.files("agents") / "prompts"
    for folder in ("gap_finder_agent", "common"):
        for stage in ("plan", "think", "act"):
            assert (shipped / folder / f"{stage}.prompt").is_file()
    assert Path(str(shipped)).resolve() == PACKAGE_PROMPTS_DIR


@pytest.mark.parametrize("template", sorted(GAP_FINDER_KEYS))
def test_shipped_gap_finder_prompts_fill_completely_and_keep_their_json(template: str) -> None:
    substitutions = {key: f"<{key}>" for key in GAP_FINDER_KEYS[template]}
    text = load_prompt_template(template, agent_name="gap_finder_agent", substitutions=substitutions)
    for value in substitutions.values():
        assert value in text
    example = text[text.index("{\n"): text.rindex("}") + 1]
    assert isinstance(json.loads(example), dict)  # the JSON example reaches the model intact, single braces


def test_agent_folder_then_common_fallback(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "writer" / "plan.prompt", "writer plan for {topic}")
    _write(tmp_path / "common" / "plan.prompt", "common plan for {topic}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    topic = {"topic": "x"}
    assert load_prompt_template("plan.prompt", agent_name="Writer", substitutions=topic) == "writer plan for x"
    assert load_prompt_template("plan.prompt", agent_name="screener", substitutions=topic) == "common plan for x"
    assert load_prompt_template("plan.prompt", substitutions=topic) == "common plan for x"


def test_configured_directory_falls_back_to_the_shipped_prompts(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "gap_finder_agent" / "plan.prompt", "custom plan {market_context}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    custom = load_prompt_template("plan.prompt", agent_name="gap_finder_agent", substitutions={"market_context": "m"})
    assert custom == "custom plan m"
    shipped = load_prompt_template("think.prompt", agent_name="gap_finder_agent")
    assert shipped == (PACKAGE_PROMPTS_DIR / "gap_finder_agent" / "think.prompt").read_text(encoding="utf-8")


def test_missing_template_raises_file_not_found(configure: Configure, tmp_path: Path) -> None:
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^Prompt template not found: .*nope\.prompt"):
        load_prompt_template("nope.prompt", agent_name="gap_finder_agent")


def test_missing_placeholder_is_a_clear_error_naming_it(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "common" / "t.prompt", "Hello {name}, you are {age} and live in {city}.")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    with pytest.raises(PromptPlaceholderError) as caught:
        load_prompt_template("t.prompt", substitutions={"name": "Ada"})
    message = str(caught.value)
    assert "{age}" in message and "{city}" in message and "{name}" not in message
    assert caught.value.field == "age"
    # Catchable the ways callers do: as our error tree, as ValueError, and as the KeyError the original raised.
    assert all(isinstance(caught.value, cls) for cls in (LLMError, ValueError, KeyError))


def test_json_braces_survive_and_only_supplied_identifiers_are_replaced(configure: Configure, tmp_path: Path) -> None:
    template = 'For {who}: reply {"key": "value", "nested": {"list": [1, {"x": 2}]}} and {{ kept }} and { spaced }.'
    _write(tmp_path / "common" / "j.prompt", template)
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    text = load_prompt_template("j.prompt", substitutions={"who": "Bob", "unused": 1})
    assert text == 'For Bob: reply {"key": "value", "nested": {"list": [1, {"x": 2}]}} and {{ kept }} and { spaced }.'


def test_substituted_values_are_not_substituted_again(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "common" / "v.prompt", "A={a} B={b}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    assert load_prompt_template("v.prompt", substitutions={"a": "{b}", "b": '{"j": 1}'}) == 'A={b} B={"j": 1}'


def test_without_substitutions_the_raw_text_is_returned(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "common" / "raw.prompt", "Keep {placeholder} as is")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    assert load_prompt_template("raw.prompt") == "Keep {placeholder} as is"
    assert load_prompt_template("raw.prompt", substitutions={}) == "Keep {placeholder} as is"
