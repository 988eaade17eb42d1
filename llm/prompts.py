"""Prompts for agents: `AgentPrompt`, the built-in `AgentPromptTemplates`, and prompt files on disk.

Prompt files live in `<prompts dir>/<agent name>/<template>` with shared ones in `<prompts dir>/common/`. The prompts
directory is `SCOUT_PROMPTS_DIR` (`config.prompts_dir`) when set; the prompts shipped inside the package
(`agents/prompts/`) are used for any file it does not have. Placeholders are single-brace `{name}`; other braces,
such as a JSON example in the prompt, are left as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm.config import get_config
from llm.errors import LLMValidationError

__all__ = [
    "PACKAGE_PROMPTS_DIR",
    "AgentPrompt",
    "AgentPromptTemplates",
    "PromptPlaceholderError",
    "load_prompt_template",
    "prompt_search_path",
]

#: The prompts shipped with the package (installed with it).
PACKAGE_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "agents" / "prompts"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class AgentPrompt:
    """A system prompt, a user prompt and optional few-shot examples (`{"user": ..., "assistant": ...}` dicts)."""

    system_prompt: str
    user_prompt: str
    context: dict[str, Any] | None = None
    examples: list[dict[str, str]] | None = None

    def to_messages(self) -> list[dict[str, Any]]:
        """System message (if any), then each example's user and assistant turns, then the user prompt."""
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        for example in self.examples or []:
            for role in ("user", "assistant"):
                if role in example:
                    messages.append({"role": role, "content": example[role]})
        messages.append({"role": "user", "content": self.user_prompt})
        return messages


class AgentPromptTemplates:
    """Ready-made prompts for common agent tasks."""

    @staticmethod
    def market_analysis(pain_points: list[str], market_context: str) -> AgentPrompt:
        """Find market opportunities in a list of pain points."""
        points = "\n".join(f"- {point}" for point in pain_points)
        return AgentPrompt(
            system_prompt=(
                "You are an expert market analyst who identifies market gaps and business opportunities from "
                "customer pain points. Be specific, realistic and evidence-driven."
            ),
            user_prompt=(
                "Analyze the following pain points and identify market opportunities.\n\n"
                f"Market Context: {market_context}\n\n"
                f"Pain Points:\n{points}\n\n"
                "For each opportunity give: the gap, the target customers, the size of the opportunity, the "
                "competition, and possible solutions."
            ),
        )

    @staticmethod
    def solution_generation(gap_description: str, target_segments: list[str]) -> AgentPrompt:
        """Propose solutions for a market gap."""
        return AgentPrompt(
            system_prompt=(
                "You are a product strategist who designs practical, differentiated solutions for market gaps."
            ),
            user_prompt=(
                f"Market Gap: {gap_description}\n\n"
                f"Target Segments: {', '.join(target_segments)}\n\n"
                "Propose solutions: for each, the core features, the value proposition, the business model and the "
                "main implementation challenges."
            ),
        )

    @staticmethod
    def report_writing(data: dict[str, Any], report_type: str, audience: str) -> AgentPrompt:
        """Write a report of `report_type` for `audience` from structured data."""
        return AgentPrompt(
            system_prompt=(
                f"You are a professional writer producing a {report_type} report for {audience}. Write clearly, "
                "structure the report with headings, and base every statement on the data given."
            ),
            user_prompt=(
                f"Write a {report_type} report for {audience} from this data:\n\n"
                f"{json.dumps(data, indent=2, default=str)}"
            ),
        )


class PromptPlaceholderError(LLMValidationError, KeyError):
    """A prompt template has a `{placeholder}` the substitutions do not supply. Also a KeyError and a ValueError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def prompt_search_path() -> list[Path]:
    """The prompt directories, in lookup order: `config.prompts_dir` (if set), then the package's prompts."""
    configured = get_config().prompts_dir
    bases = [Path(configured).expanduser()] if configured else []
    return [*bases, PACKAGE_PROMPTS_DIR] if PACKAGE_PROMPTS_DIR not in bases else bases


def _find_template(template_name: str, agent_name: str | None) -> Path:
    bases = prompt_search_path()
    folders = [agent_name.lower(), "common"] if agent_name else ["common"]
    candidates = [base / folder / template_name for folder in folders for base in bases]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(path) for path in candidates)
    raise FileNotFoundError(f"Prompt template not found: {bases[0] / 'common' / template_name} (looked in: {looked})")


def _substitute(text: str, substitutions: Mapping[str, Any], path: Path) -> str:
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in substitutions})
    if missing:
        names = ", ".join(f"{{{name}}}" for name in missing)
        raise PromptPlaceholderError(
            f"Prompt template {path} needs placeholder(s) {names}, missing from substitutions", field=missing[0]
        )
    return _PLACEHOLDER.sub(lambda match: str(substitutions[match.group(1)]), text)


def load_prompt_template(
    template_name: str, agent_name: str | None = None, substitutions: Mapping[str, Any] | None = None
) -> str:
    """The text of a prompt file, with `{name}` placeholders filled in from `substitutions`.

    Looks for `<agent_name lowercased>/<template_name>`, then `common/<template_name>`, in each prompts directory
    (see `prompt_search_path`). Only `{identifier}` placeholders are replaced; JSON braces stay as they are. With no
    substitutions the raw text is returned.

    Raises:
        FileNotFoundError: no such template ("Prompt template not found: <path> ...").
        PromptPlaceholderError: the template has a placeholder missing from `substitutions` (named in the message).
    """
    path = _find_template(template_name, agent_name)
    text = path.read_text(encoding="utf-8")
    return _substitute(text, substitutions, path) if substitutions else text
