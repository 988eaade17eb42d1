"""Prompt files: where `load_prompt_template` looks (ScoutAgent's `prompts/` beside `llm/` included), how it fills
placeholders, and what a miss says."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import agents
from llm import prompts
from llm.errors import LLMError
from llm.prompts import (
    PromptNotFoundError,
    PromptPlaceholderError,
    load_prompt_template,
    prompt_search_path,
    register_prompt_root,
)
from tests.agents.helpers import Configure

LLM_PACKAGE = Path(prompts.__file__).resolve().parent

GAP_FINDER_KEYS = {
    "plan.prompt": {"pain_points_count", "market_context", "analysis_scope", "phases"},
    "think.prompt": {"market_context", "pain_points"},
    "act.prompt": {"market_context", "themes"},
}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def only_registered(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Registered roots start empty for the test (the agents package's one is put back afterwards)."""
    roots: list[Path] = []
    monkeypatch.setattr(prompts, "_registered_roots", roots)
    monkeypatch.setattr(prompts, "_warned", set())
    return roots


# -- the shipped prompts ----------------------------------------------------------------------------------------


def test_the_agents_package_registers_the_prompts_it_ships() -> None:
    assert Path(agents.__file__).resolve().parent / "prompts" == agents.PROMPTS_DIR
    assert agents.PROMPTS_DIR in prompt_search_path()
    for folder in ("gap_finder_agent", "common"):
        for stage in ("plan", "think", "act"):
            assert (agents.PROMPTS_DIR / folder / f"{stage}.prompt").is_file()


def test_llm_does_not_name_the_agents_package() -> None:
    source = (LLM_PACKAGE / "prompts.py").read_text(encoding="utf-8")
    assert '"agents"' not in source and "import agents" not in source and "from agents" not in source


@pytest.mark.parametrize("template", sorted(GAP_FINDER_KEYS))
def test_shipped_gap_finder_prompts_fill_completely_and_name_their_schemas_fields(template: str) -> None:
    from agents.gap_finder_enhanced import ActReply, GapReply, PlanReply, ThemeReply, ThoughtsReply

    substitutions = {key: f"<{key}>" for key in GAP_FINDER_KEYS[template]}
    text = load_prompt_template(template, agent_name="gap_finder_agent", substitutions=substitutions, strict=True)
    for value in substitutions.values():
        assert value in text
    # the schema goes to the vendor natively; the prompt explains each field the model fills
    schemas = {"plan.prompt": [PlanReply], "think.prompt": [ThoughtsReply, ThemeReply],
               "act.prompt": [ActReply, GapReply]}[template]
    fields = {name for schema in schemas for name in schema.model_fields if name not in ("themes", "gaps")}
    assert all(f'"{name}"' in text for name in fields - {"phases"}), fields


# -- lookup order -------------------------------------------------------------------------------------------------


def test_roots_in_order_explicit_then_configured_then_registered(
    configure: Configure, tmp_path: Path, only_registered: list[Path]
) -> None:
    explicit, configured, registered = tmp_path / "explicit", tmp_path / "configured", tmp_path / "registered"
    for root in (explicit, configured, registered):
        _write(root / "common" / "plan.prompt", f"from {root.name}")
    configure(SCOUT_PROMPTS_DIR=configured)
    register_prompt_root(registered)
    register_prompt_root(registered)  # once only
    assert prompt_search_path(explicit) == [explicit, configured, registered.resolve()]
    assert load_prompt_template("plan.prompt", prompts_dir=explicit) == "from explicit"
    assert load_prompt_template("plan.prompt") == "from configured"
    (configured / "common" / "plan.prompt").unlink()
    assert load_prompt_template("plan.prompt") == "from registered"


def test_agent_folder_before_common_within_each_root(
    configure: Configure, tmp_path: Path, only_registered: list[Path]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first / "writer" / "plan.prompt", "first writer")
    _write(first / "common" / "plan.prompt", "first common")
    _write(second / "screener" / "plan.prompt", "second screener")
    configure(SCOUT_PROMPTS_DIR=first)
    register_prompt_root(second)
    assert load_prompt_template("plan.prompt", agent_name="Writer") == "first writer"  # lowercased, as the original
    # The first root's common/ wins over the second root's agent folder: roots are searched one after the other.
    assert load_prompt_template("plan.prompt", agent_name="screener") == "first common"
    assert load_prompt_template("plan.prompt") == "first common"


def test_template_name_with_or_without_its_extension(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "research" / "think.prompt", "research think")
    _write(tmp_path / "common" / "default_system_prompt.txt", "system text")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    assert load_prompt_template("think.prompt", agent_name="research") == "research think"
    assert load_prompt_template("think", agent_name="research") == "research think"
    assert load_prompt_template("default_system_prompt.txt") == "system text"  # another extension is kept


def test_a_miss_is_a_file_not_found_error_naming_every_path_tried(
    configure: Configure, tmp_path: Path, only_registered: list[Path]
) -> None:
    configured, registered = tmp_path / "configured", tmp_path / "registered"
    configure(SCOUT_PROMPTS_DIR=configured)
    register_prompt_root(registered)
    with pytest.raises(FileNotFoundError) as caught:
        load_prompt_template("nope", agent_name="Gap_Finder_Agent", prompts_dir=tmp_path / "explicit")
    error = caught.value
    assert isinstance(error, PromptNotFoundError) and isinstance(error, LLMError)
    expected = [root / folder / "nope.prompt" for root in (tmp_path / "explicit", configured, registered.resolve())
                for folder in ("gap_finder_agent", "common")]
    assert error.tried == expected
    message = str(error)
    assert message.startswith("Prompt template not found: nope.prompt")
    for path in expected:
        assert str(path) in message


def test_prompts_beside_a_copied_llm_package_are_found(tmp_path: Path) -> None:
    """ScoutAgent's layout: `<repo>/llm/` (our package copied in) and `<repo>/prompts/<agent>/<stage>.prompt`."""
    repo = tmp_path / "scout_agent"
    shutil.copytree(LLM_PACKAGE, repo / "llm", ignore=shutil.ignore_patterns("__pycache__"))
    _write(repo / "prompts" / "scout_agent" / "plan.prompt", "Scout plan for {target_market}; run {run_id}")
    _write(repo / "prompts" / "common" / "think.prompt", "Common think {{market_context}} -> {\"json\": true}")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(repo)!r})
        import llm.prompts as prompts
        from llm.utils import load_prompt_template
        print(json.dumps({{
            "llm": prompts.__file__,
            "agents_loaded": "agents" in sys.modules,
            "roots": [str(root) for root in prompts.prompt_search_path()],
            "plan": load_prompt_template("plan.prompt", agent_name="scout_agent",
                                         substitutions={{"target_market": "SMB"}}),
            "think": load_prompt_template("think.prompt", agent_name="validator_agent",
                                          substitutions={{"market_context": "retail"}}),
        }}))
    """)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SCOUT_")}
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["llm"]).resolve().is_relative_to(repo.resolve())  # the copy, not this checkout
    assert out["agents_loaded"] is False
    assert out["roots"] == [str((repo / "prompts").resolve())]
    assert out["plan"] == "Scout plan for SMB; run {run_id}"  # the unfilled placeholder goes out as written
    assert out["think"] == 'Common think retail -> {"json": true}'
    assert "no substitution for {run_id}" in result.stderr  # logged at WARNING (the last-resort handler)


# -- placeholders ---------------------------------------------------------------------------------------------------


def test_an_unfilled_placeholder_stays_literal_with_one_warning_per_template(
    configure: Configure, tmp_path: Path, only_registered: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "common" / "plan.prompt", "Plan {keywords} for {run_id} within {limits_json}")
    _write(tmp_path / "common" / "act.prompt", "Act on {run_id}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    with caplog.at_level(logging.WARNING, logger="llm.prompts"):
        for _ in range(3):
            text = load_prompt_template("plan.prompt", substitutions={"keywords": "crm"})
            assert text == "Plan crm for {run_id} within {limits_json}"
        assert load_prompt_template("act.prompt", substitutions={"x": 1}) == "Act on {run_id}"
        other = load_prompt_template("plan.prompt", substitutions={"run_id": "r1"})  # the same template again
        assert other == "Plan {keywords} for r1 within {limits_json}"
    warnings = [record.getMessage() for record in caplog.records if record.name == "llm.prompts"]
    assert len(warnings) == 2
    assert "plan.prompt" in warnings[0] and "{limits_json}, {run_id}" in warnings[0]
    assert "act.prompt" in warnings[1]
    assert all(record.levelno == logging.WARNING for record in caplog.records if record.name == "llm.prompts")


def test_strict_raises_the_typed_error_naming_every_missing_placeholder(
    configure: Configure, tmp_path: Path
) -> None:
    _write(tmp_path / "common" / "t.prompt", "Hello {name}, you are {age} and live in {{city}}.")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    with pytest.raises(PromptPlaceholderError) as caught:
        load_prompt_template("t.prompt", substitutions={"name": "Ada"}, strict=True)
    message = str(caught.value)
    assert "{age}" in message and "{city}" in message and "{name}" not in message
    assert caught.value.field == "age"
    # Catchable the ways callers do: as our error tree, as ValueError, and as a KeyError.
    assert all(isinstance(caught.value, cls) for cls in (LLMError, ValueError, KeyError))
    with pytest.raises(PromptPlaceholderError):
        load_prompt_template("t.prompt", strict=True)  # strict with no substitutions at all: every one is missing


def test_json_braces_survive_and_only_supplied_identifiers_are_replaced(configure: Configure, tmp_path: Path) -> None:
    template = 'For {who}: reply {"key": "value", "nested": {"list": [1, {"x": 2}]}} and {{ kept }} and { spaced }.'
    _write(tmp_path / "common" / "j.prompt", template)
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    text = load_prompt_template("j.prompt", substitutions={"who": "Bob", "unused": 1})
    assert text == 'For Bob: reply {"key": "value", "nested": {"list": [1, {"x": 2}]}} and {{ kept }} and { spaced }.'


def test_double_brace_placeholders_get_the_value_without_braces(configure: Configure, tmp_path: Path) -> None:
    """ScoutAgent's gap finder prompts write `{{pain_points_count}}`; the original sent `{3}`. We send `3`; doubled
    JSON braces are left as written."""
    _write(tmp_path / "common" / "d.prompt", "Pain points: {{pain_points_count}}\nReply: {{ \"gaps\": [] }}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    text = load_prompt_template("d.prompt", substitutions={"pain_points_count": 3})
    assert text == "Pain points: 3\nReply: {{ \"gaps\": [] }}"


def test_substituted_values_are_not_substituted_again(configure: Configure, tmp_path: Path) -> None:
    _write(tmp_path / "common" / "v.prompt", "A={a} B={b}")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    assert load_prompt_template("v.prompt", substitutions={"a": "{b}", "b": '{"j": 1}'}) == 'A={b} B={"j": 1}'


def test_without_substitutions_the_raw_text_is_returned(
    configure: Configure, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "common" / "raw.prompt", "Keep {placeholder} and {{double}} as is")
    configure(SCOUT_PROMPTS_DIR=tmp_path)
    with caplog.at_level(logging.WARNING, logger="llm.prompts"):
        assert load_prompt_template("raw.prompt") == "Keep {placeholder} and {{double}} as is"
        assert load_prompt_template("raw.prompt", substitutions={}) == "Keep {placeholder} and {{double}} as is"
    assert not [record for record in caplog.records if record.name == "llm.prompts"]
