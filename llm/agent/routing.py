"""Which backend and model an agent's call goes to: the precedence of README "Agents" (ScoutAgent contract 3.4) and
the name-based defaults an agent without a `preferred_backend` gets (contract 3.5)."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping

from llm.agent.calls import backend_name
from llm.config import get_config

__all__ = ["DEFAULT_PREFERRED_BACKEND", "NAME_DEFAULTS", "Route", "agent_key", "name_defaults", "reroute", "route"]

#: Name-based defaults (contract 3.5): substrings of the agent name -> preferred backend and task preferences.
NAME_DEFAULTS: tuple[tuple[tuple[str, ...], str, dict[str, str]], ...] = (
    (("code", "builder"), "deepseek",
     dict.fromkeys(("code_generation", "code_review", "debugging", "technical_analysis"), "deepseek")),
    (("writer", "content"), "claude",
     dict.fromkeys(("creative_writing", "content_creation", "storytelling", "editing"), "claude")),
    (("analysis", "research"), "openai",
     dict.fromkeys(("data_analysis", "research", "reasoning", "planning"), "openai")),
    (("gap", "finder"), "claude",
     {"market_analysis": "claude", "competitive_analysis": "openai", "trend_analysis": "gemini",
      "quick_insights": "gemini"}),
)
DEFAULT_PREFERRED_BACKEND = "openai"

#: (backend, model, source): the rule that matched (`source`) and what it names; None where it names nothing.
Route = tuple[str | None, str | None, str | None]

#: (agent key, backend, rule) of preferences already logged as "not registered, the default answers".
_reroutes_logged: set[tuple[str, str, str]] = set()


def agent_key(name: str) -> str:
    """The key of an agent's `SCOUT_LLM_AGENT_<KEY>_*` routes: `gap_finder_agent` -> `gap_finder`."""
    key = re.sub(r"[^0-9a-zA-Z]", "_", name).lower()
    key = key.removesuffix("agent") if key != "agent" else key
    return key.rstrip("_")


def name_defaults(name: str) -> tuple[str, dict[str, str]]:
    """(preferred backend, task preferences) for an agent named `name`: the first row of `NAME_DEFAULTS` whose
    substring the name contains, else `DEFAULT_PREFERRED_BACKEND` and no task preference."""
    lowered = name.lower()
    for needles, backend, tasks in NAME_DEFAULTS:
        if any(needle in lowered for needle in needles):
            return backend, tasks
    return DEFAULT_PREFERRED_BACKEND, {}


def route(
    key: str, task_type: str | None, tasks: Mapping[str, str], preferred: str | None, explicit: object
) -> Route:
    """The first rule that matches: the call's backend, the task preference, the agent's config route, the global
    config route, the agent's preferred backend; a config route's model belongs to the backend it names."""
    explicit_name = backend_name(explicit)
    if explicit_name:
        return explicit_name, None, "explicit"
    task_backend = tasks.get(task_type) if task_type is not None else None
    if task_backend:
        return backend_name(task_backend), None, f"task:{task_type}"
    routing = get_config().llm_routing
    backend, model = backend_name(routing.per_agent_backend.get(key)), routing.per_agent_model.get(key) or None
    if backend or model:
        return backend, model, "agent_config"
    if routing.default_backend or routing.default_model:
        return backend_name(routing.default_backend), routing.default_model or None, "default_config"
    if preferred:
        return preferred, None, "preferred"
    return None, None, None


def reroute(chosen: Route, known: Collection[str] | None, who: str, key: str, logger: logging.Logger) -> Route:
    """`chosen`, or (None, None, source) when it is a preference for a backend the manager does not have: the
    manager's default then answers with its own model (the route's model belongs to the missing backend). Each such
    switch is logged once per agent, backend and rule."""
    backend, model, source = chosen
    if not backend or source == "explicit" or known is None or backend in known:
        return chosen
    said = (key, backend, str(source))
    if said not in _reroutes_logged:
        _reroutes_logged.add(said)
        logger.info("%s prefers %s (%s), which is not registered; the default backend answers with its own model%s",
                    who, backend, source, f" (not {model!r})" if model else "")
    return None, None, source
