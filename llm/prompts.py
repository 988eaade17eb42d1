"""Prompts for agents: `AgentPrompt`, the built-in `AgentPromptTemplates`, and prompt files on disk
(`<root>/<agent name>/<template>.prompt`, shared ones in `<root>/common/`). The search roots, their order and the
placeholder rules are in README "Agents". A template is read only from inside its root (names are checked, and the
file's real path, symlinks resolved, must lie in the root's real path), and only up to `MAX_PROMPT_BYTES`."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm.config import get_config
from llm.errors import LLMConfigError, LLMValidationError

__all__ = [
    "AgentPrompt",
    "AgentPromptTemplates",
    "MAX_PROMPT_BYTES",
    "PromptNotFoundError",
    "PromptPathError",
    "PromptPlaceholderError",
    "load_prompt_template",
    "prompt_search_path",
    "register_prompt_root",
]

logger = logging.getLogger("llm.prompts")

#: The prompt files' extension; a template name given without an extension gets it.
PROMPT_SUFFIX = ".prompt"

#: The largest prompt file read, in bytes: a template is pages of text; a larger file is refused unread.
MAX_PROMPT_BYTES = 1024 * 1024

#: `{name}`, or `{{name}}` (replaced by the bare value: ScoutAgent's gap finder prompts write their placeholders with
#: double braces). Any other brace, a JSON example's included, is left as written.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

_registered_roots: list[Path] = []
_warned: set[Path] = set()  # templates whose unfilled placeholders were logged
_warned_lock = threading.Lock()


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
    """A prompt template has a `{placeholder}` the substitutions do not supply (with `strict=True`). Also a KeyError
    and a ValueError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptNotFoundError(LLMConfigError, FileNotFoundError):
    """No prompt file of that name in any prompt root. Also a FileNotFoundError, as in ScoutAgent.

    Attributes:
        tried: every path looked at, in lookup order.
    """

    def __init__(self, message: str, tried: list[Path]) -> None:
        super().__init__(message)
        self.tried = tried

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptPathError(LLMValidationError):
    """A template name or agent name that leaves its prompt root (an absolute name, a `..`, a path separator in the
    agent name), or a prompt file whose real path (symlinks resolved) lies outside its root. Also a ValueError."""


def register_prompt_root(path: str | Path) -> None:
    """Add a prompt root searched after the configured ones (a package shipping prompts calls this on import).

    Registering the same folder again changes nothing.
    """
    root = Path(path).expanduser().resolve()
    if root not in _registered_roots:
        _registered_roots.append(root)


def _layout_root() -> Path | None:
    """ScoutAgent's layout: `prompts/` beside the `llm/` package."""
    root = Path(__file__).resolve().parent.parent / "prompts"
    return root if root.is_dir() else None


def prompt_search_path(prompts_dir: str | Path | None = None) -> list[Path]:
    """The prompt roots, in lookup order (see the module docstring); each folder once."""
    configured = getattr(get_config(), "prompts_dir", None)
    candidates = [prompts_dir, configured, _layout_root(), *_registered_roots]
    roots: list[Path] = []
    for candidate in candidates:
        if candidate is None or candidate == "":
            continue
        root = Path(candidate).expanduser()
        if root not in roots:
            roots.append(root)
    return roots


def _file_name(template_name: str) -> str:
    return template_name if Path(template_name).suffix else template_name + PROMPT_SUFFIX


def _checked_name(field: str, value: object, *, folders: bool) -> str:
    """`value` when it names something inside a folder: a relative path without `..` (`folders`: sub-folders
    allowed), or a single name."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise PromptPathError(f"{field} must be a non-empty file name, got {value!r:.80}", field=field)
    parts = Path(value).parts
    if Path(value).anchor or ".." in parts or (not folders and (len(parts) != 1 or value in (".", "/"))):
        raise PromptPathError(f"{field} {value!r:.80} leaves its prompt folder: give a name inside it", field=field)
    return value


def _inside(root: Path, path: Path) -> Path:
    """`path`'s real path, which must lie inside `root`'s: a symlink out of the root is refused, not followed."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise PromptPathError(f"Prompt template {path} resolves outside its root {root}: not read",
                              field="template_name")
    return real


def _find_template(template_name: str, agent_name: str | None, prompts_dir: str | Path | None) -> Path:
    name = _file_name(_checked_name("template_name", template_name, folders=True))
    agent = _checked_name("agent_name", agent_name, folders=False).lower() if agent_name else None
    folders = [agent, "common"] if agent else ["common"]
    tried: list[Path] = []
    for root in prompt_search_path(prompts_dir):
        for folder in folders:
            path = root / folder / name
            if path.is_file():
                return _inside(root, path)
            tried.append(path)
    looked = ", ".join(str(path) for path in tried) or "no prompt root is configured"
    raise PromptNotFoundError(f"Prompt template not found: {name} (looked in: {looked})", tried)


def _read(path: Path) -> str:
    """The file's text, refused unread when its size is above `MAX_PROMPT_BYTES` (and read no further than that
    when a file's reported size is wrong)."""
    try:
        with open(path, encoding="utf-8") as handle:
            size = os.fstat(handle.fileno()).st_size
            text = handle.read(MAX_PROMPT_BYTES + 1) if size <= MAX_PROMPT_BYTES else None
    except UnicodeDecodeError as exc:
        raise LLMConfigError(f"Prompt template {path} is not UTF-8 text (byte {exc.start})") from None
    if text is None or len(text.encode("utf-8")) > MAX_PROMPT_BYTES:
        raise LLMConfigError(f"Prompt template {path} is larger than MAX_PROMPT_BYTES ({MAX_PROMPT_BYTES} bytes): "
                             "not read")
    return text


def _warn_once(path: Path, missing: list[str]) -> None:
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    names = ", ".join(f"{{{name}}}" for name in missing)
    logger.warning("Prompt template %s: no substitution for %s; sent as literal text", path, names)


def _substitute(text: str, substitutions: Mapping[str, Any], path: Path, strict: bool) -> str:
    found = {match.group(1) or match.group(2) for match in _PLACEHOLDER.finditer(text)}
    missing = sorted(name for name in found if name not in substitutions)
    if missing:
        if strict:
            names = ", ".join(f"{{{name}}}" for name in missing)
            raise PromptPlaceholderError(
                f"Prompt template {path} needs placeholder(s) {names}, missing from substitutions", field=missing[0]
            )
        _warn_once(path, missing)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return str(substitutions[name]) if name in substitutions else match.group(0)

    return _PLACEHOLDER.sub(fill, text)


def load_prompt_template(
    template_name: str,
    agent_name: str | None = None,
    substitutions: Mapping[str, Any] | None = None,
    *,
    prompts_dir: str | Path | None = None,
    strict: bool = False,
) -> str:
    """The text of a prompt file, with its placeholders filled in from `substitutions`.

    Args:
        template_name: the file name, with or without `.prompt` (`"plan.prompt"` or `"plan"`).
        agent_name: looks in `<agent_name lowercased>/` before `common/`; None looks in `common/` only.
        substitutions: values for `{name}` placeholders (`{{name}}` too). None or empty returns the raw text.
        prompts_dir: a prompt root searched before all others.
        strict: raise for a placeholder `substitutions` does not supply, instead of leaving it as literal text.

    Raises:
        PromptNotFoundError: (a FileNotFoundError) no such file in any root; the message names every path tried.
        PromptPathError: (a ValueError) a name that leaves its root, or a file that resolves outside it.
        LLMConfigError: the file is larger than `MAX_PROMPT_BYTES`, or not UTF-8 text.
        PromptPlaceholderError: `strict=True` and a placeholder is missing (named in the message).
    """
    path = _find_template(template_name, agent_name, prompts_dir)
    text = _read(path)
    if not substitutions and not strict:
        return text
    return _substitute(text, substitutions or {}, path, strict)
