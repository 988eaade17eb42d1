"""The agent side of scout-llm: `LLMAgentMixin` and the module helpers `quick_llm_generate`, `llm_summarize`,
`llm_classify` (defined in `llm.agent.calls`). Prompt helpers (`AgentPrompt`, `AgentPromptTemplates`,
`load_prompt_template`) live in `llm.prompts` and reply parsing (`extract_json`, `to_string_list`) in
`llm.output.structured`; all are importable from here.

    class MyAgent(BaseAgent, LLMAgentMixin):
        async def plan(self, agent_input):
            return {"plan": await self.llm_generate(f"Plan: {agent_input.data}", task_type="plan")}

Routing (which backend a call goes to), first match wins (ScoutAgent contract, section 3.4):

1. the call's `backend_type=`;
2. `task_backend_preferences[task_type]`;
3. the agent's config route, `SCOUT_LLM_AGENT_<KEY>_BACKEND` / `_MODEL` (`<KEY>` from `_agent_key()`, e.g.
   `gap_finder_agent` -> `gap_finder`);
4. the global `SCOUT_LLM_DEFAULT_BACKEND` / `SCOUT_LLM_DEFAULT_MODEL`;
5. `preferred_backend`;
6. nothing: the manager's default backend.

Agents that set no `preferred_backend` get a name-based default (section 3.5: "writer" -> claude, ...). Rules 2-5
are preferences, not demands: when the manager has no backend of that name the call goes to the manager's default
(and its failover chain) instead of failing with "Backend not available". Only an explicit `backend_type=` that
names an unknown backend fails.

A model belongs to the backend its rule names: `SCOUT_LLM_DEFAULT_MODEL` goes with `SCOUT_LLM_DEFAULT_BACKEND`, a
per-agent model with its per-agent backend (a rule that names a model but no backend means the default backend). When
a call is routed elsewhere (that backend is not registered) or fails over to another backend, the backend that answers
uses its own configured model; each such switch is logged once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from pydantic import BaseModel, Field, model_validator

from llm.agent.calls import _content, _prompt_messages
from llm.agent.calls import backend_name as backend_name
from llm.agent.calls import llm_classify as llm_classify
from llm.agent.calls import llm_summarize as llm_summarize
from llm.agent.calls import quick_llm_generate as quick_llm_generate
from llm.agent.calls import shared_llm_manager as shared_llm_manager
from llm.base import LLMRequest
from llm.config import get_config
from llm.errors import LLMStructuredOutputError
from llm.output.structured import InvalidOutput, best_category, extract_json, output_spec, parse_output, to_string_list
from llm.prompts import (
    AgentPrompt,
    AgentPromptTemplates,
    PromptNotFoundError,
    PromptPlaceholderError,
    load_prompt_template,
    register_prompt_root,
)

if TYPE_CHECKING:
    from llm.manager import LLMManager

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


M = TypeVar("M", bound=BaseModel)


class TextAnalysis(BaseModel):
    """What `llm_analyze_text` asks for: short, bounded fields a small model can fill too."""

    analysis_type: str = Field("", max_length=60)
    key_findings: list[str] = Field(default_factory=list, max_length=10)
    summary: str = Field("", max_length=1200)
    confidence: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _findings_alone(cls, value: Any) -> Any:
        """A bare array of findings is an answer too (no repair asked for it)."""
        return {"key_findings": to_string_list(value)} if isinstance(value, list) else value


class TextInsights(BaseModel):
    """What `llm_extract_insights` asks for: a bounded list of short insights."""

    insights: list[str] = Field(default_factory=list, max_length=12)

    @model_validator(mode="before")
    @classmethod
    def _insights_alone(cls, value: Any) -> Any:
        """A bare array is an answer too, and an insight given as an object counts by its text."""
        if isinstance(value, list):
            value = {"insights": value}
        if isinstance(value, dict) and isinstance(value.get("insights"), list):
            value = {**value, "insights": to_string_list(value["insights"])}
        return value


# -- routing -----------------------------------------------------------------------------------------------------

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

_UNNAMED_LOGGER = "llm.agent.unknown"

#: (agent key, backend, rule) of preferences already logged as "not registered, the default answers".
_reroutes_logged: set[tuple[str, str, str]] = set()


class LLMAgentMixin:
    """Gives an agent `llm_generate`, streaming, structured helpers and per-task backend routing.

    Works in every way ScoutAgent's agents use it, with any `BaseAgent` (ours, or one that requires `name` and never
    calls `super().__init__()`):

    * `class X(BaseAgent, LLMAgentMixin)`, built with `super().__init__(name=...)` (our cooperative BaseAgent runs
      the mixin's `__init__`);
    * either class order with explicit `BaseAgent.__init__(self, ...)` and `LLMAgentMixin.__init__(self, ...)`
      calls, in either order: the mixin's `__init__` passes keyword arguments it does not know on to the next class
      only when there are some, so it never runs a base class's `__init__` a second time, without its `name`;
    * an agent that never runs the mixin's `__init__`: every attribute has a default (`preferred_backend` None,
      `task_backend_preferences` an empty dict created on first use, `_llm_manager` None, `llm_logger` created on
      first use), so the methods work; only the name-based defaults (contract 3.5) are not applied.

    Attributes:
        preferred_backend: the agent's backend when nothing more specific applies (rule 5).
        task_backend_preferences: task type -> backend (rule 2); a plain dict, replaceable wholesale.
        _llm_manager: the manager to use; inject one with `agent._llm_manager = manager` (used as is, even if
            empty), else the global one is fetched and initialised on first use.
        llm_logger: this agent's logger, `llm.agent.<name>`.
    """

    #: Whether an agent without a `preferred_backend` gets the name-based defaults of contract 3.5.
    llm_name_defaults: ClassVar[bool] = True

    _llm_manager: LLMManager | None = None
    _preferred_backend: str | None = None

    def __init__(self, preferred_backend: str | None = None, **kwargs: Any) -> None:
        if kwargs:  # a cooperative `super().__init__(name=..., ...)` chain: the rest is for the next class
            super().__init__(**kwargs)
        name = getattr(self, "name", None)
        if preferred_backend is None and not kwargs and "_llm_ready" in self.__dict__:
            # Set up already (an explicit `LLMAgentMixin.__init__` before a cooperative BaseAgent passed the call
            # on): nothing new to apply, so keep the agent's choices.
            return
        self.__dict__["_llm_ready"] = True
        self._llm_manager = getattr(self, "_llm_manager", None)
        self.llm_logger = logging.getLogger(f"llm.agent.{name}" if name else _UNNAMED_LOGGER)
        self.preferred_backend = preferred_backend
        self.task_backend_preferences = {}
        self._setup_agent_llm_preferences(preferred_backend)

    @property
    def llm_logger(self) -> logging.Logger:
        """`llm.agent.<name>`; made on first use when `__init__` did not run, or ran before the agent had a name."""
        existing = self.__dict__.get("_llm_logger")
        name = getattr(self, "name", None)
        if isinstance(existing, logging.Logger) and not (name and existing.name == _UNNAMED_LOGGER):
            return existing
        created = logging.getLogger(f"llm.agent.{name}" if name else _UNNAMED_LOGGER)
        self.__dict__["_llm_logger"] = created
        return created

    @llm_logger.setter
    def llm_logger(self, value: logging.Logger) -> None:
        self.__dict__["_llm_logger"] = value

    # -- preferences ---------------------------------------------------------------------------------------------

    @property
    def preferred_backend(self) -> str | None:
        """The agent's own backend choice (a string; an enum assigned here is stored as its value)."""
        return self._preferred_backend

    @preferred_backend.setter
    def preferred_backend(self, value: Any) -> None:
        self._preferred_backend = backend_name(value)

    @property
    def task_backend_preferences(self) -> dict[str, str]:
        """Task type -> backend name. Assigning a dict stores a copy with enum values turned into strings."""
        preferences: dict[str, str] = self.__dict__.setdefault("_task_backend_preferences", {})
        return preferences

    @task_backend_preferences.setter
    def task_backend_preferences(self, value: Mapping[str, Any]) -> None:
        normalised = {str(task): backend_name(backend) for task, backend in dict(value).items()}
        self.__dict__["_task_backend_preferences"] = {task: b for task, b in normalised.items() if b}

    def _setup_agent_llm_preferences(self, preferred_backend: str | None = None) -> None:
        """Apply the name-based defaults (contract 3.5) when no backend is preferred yet."""
        if self.preferred_backend is not None or not self.llm_name_defaults:
            return
        lowered = str(getattr(self, "name", None) or "").lower()
        backend, tasks = DEFAULT_PREFERRED_BACKEND, {}
        for needles, row_backend, row_tasks in NAME_DEFAULTS:
            if any(needle in lowered for needle in needles):
                backend, tasks = row_backend, row_tasks
                break
        self.preferred_backend = backend
        self.task_backend_preferences = tasks

    def set_preferred_backend(self, backend_type: Any) -> None:
        """Use this backend when no task preference or config route applies."""
        self.preferred_backend = backend_type

    def set_task_backend(self, task_type: str, backend_type: Any) -> None:
        """Route calls made with `task_type=task_type` to this backend."""
        name = backend_name(backend_type)
        if name is None:
            self.task_backend_preferences.pop(task_type, None)
        else:
            self.task_backend_preferences[task_type] = name

    def _agent_key(self) -> str:
        """The key of this agent's `SCOUT_LLM_AGENT_<KEY>_*` routes: `gap_finder_agent` -> `gap_finder`."""
        raw = getattr(self, "name", None) or type(self).__name__
        key = re.sub(r"[^0-9a-zA-Z]", "_", str(raw)).lower()
        key = key.removesuffix("agent") if key != "agent" else key
        return key.rstrip("_")

    def _route(self, task_type: str | None, explicit_backend: Any) -> tuple[str | None, str | None, str | None]:
        """(backend, model, source) of a call: the first rule of the module docstring that matches."""
        explicit = backend_name(explicit_backend)
        if explicit:
            return explicit, None, "explicit"
        task_backend = self.task_backend_preferences.get(task_type) if task_type is not None else None
        if task_backend:
            return backend_name(task_backend), None, f"task:{task_type}"
        routing = get_config().llm_routing
        key = self._agent_key()
        backend, model = backend_name(routing.per_agent_backend.get(key)), routing.per_agent_model.get(key) or None
        if backend or model:
            return backend, model, "agent_config"
        if routing.default_backend or routing.default_model:
            return backend_name(routing.default_backend), routing.default_model or None, "default_config"
        if self.preferred_backend:
            return self.preferred_backend, None, "preferred"
        return None, None, None

    def _resolve_backend_and_model(
        self, task_type: str | None, explicit_backend: Any
    ) -> tuple[str | None, str | None]:
        """(backend, model) for a call; None means "the manager's default" (contract 3.4)."""
        backend, model, source = self._route(task_type, explicit_backend)
        manager = self._llm_manager
        # A preference naming a backend this manager does not have: use the manager's default (model included).
        known = manager.get_available_backends() if manager is not None else None
        if backend and source != "explicit" and known is not None and backend not in known:
            # The model of that route belongs to that backend: the default backend answers with its own model.
            said = (self._agent_key(), backend, str(source))
            if said not in _reroutes_logged:
                _reroutes_logged.add(said)
                self.llm_logger.info(
                    "%s prefers %s (%s), which is not registered; the default backend answers with its own model%s",
                    getattr(self, "name", None) or type(self).__name__, backend, source,
                    f" (not {model!r})" if model else "",
                )
            return None, None
        return backend, model

    def get_optimal_backend(self, task_type: str | None = None) -> str | None:
        """The backend `llm_generate(task_type=task_type)` would use now (None: no backend known yet)."""
        backend, _ = self._resolve_backend_and_model(task_type, None)
        if backend is None and self._llm_manager is not None:
            return self._llm_manager.get_default_backend()
        return backend

    def initialize_llm(self) -> None:
        """Kept for ScoutAgent callers; the manager is fetched lazily on the first call."""

    async def _ensure_llm_initialized(self) -> LLMManager:
        if self._llm_manager is None:
            self._llm_manager = await shared_llm_manager()
        return self._llm_manager

    # -- generation ----------------------------------------------------------------------------------------------

    async def _build_request(
        self, prompt: Any, backend_type: Any, task_type: str | None, temperature: float | None,
        max_tokens: int | None, extra: dict[str, Any], stream: bool,
    ) -> tuple[LLMManager, LLMRequest, str | None]:
        messages = _prompt_messages(prompt)  # before any network work
        manager = await self._ensure_llm_initialized()
        backend, model = self._resolve_backend_and_model(task_type, backend_type)
        if model:
            extra.setdefault("model_name_override", model)  # the caller's own override wins over routing
        response_format = extra.pop("response_format", None)  # structured output: the request's own field
        request = LLMRequest(
            messages=messages, temperature=temperature, max_tokens=max_tokens, stream=stream, extra_params=extra,
            response_format=response_format,
        )
        return manager, request, backend

    async def llm_generate(
        self,
        prompt: str | AgentPrompt,
        backend_type: str | None = None,
        task_type: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> str:
        """Answer a prompt (a string or an `AgentPrompt`); extra keyword arguments go into `extra_params`, except
        `response_format`, which asks for structured output (`LLMRequest.response_format`; the text is the JSON).

        Raises:
            LLMValidationError: the prompt is neither a string nor an `AgentPrompt` (before any network work).
            LLMError: the call failed (the manager's typed error).
        """
        manager, request, backend = await self._build_request(
            prompt, backend_type, task_type, temperature, max_tokens, dict(kwargs), stream=False
        )
        response = await manager.generate(request, backend)
        self.llm_logger.debug(
            "llm_generate task=%s served by %s (%s) in %.3fs",
            task_type, response.backend_type, response.model, response.response_time,
        )
        return _content(response)

    @overload
    async def llm_generate_structured(
        self, prompt: str | AgentPrompt, output_type: type[M], backend_type: str | None = None,
        task_type: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
        **kwargs: Any,
    ) -> M: ...

    @overload
    async def llm_generate_structured(
        self, prompt: str | AgentPrompt, output_type: dict[str, Any], backend_type: str | None = None,
        task_type: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
        **kwargs: Any,
    ) -> Any: ...

    async def llm_generate_structured(
        self,
        prompt: str | AgentPrompt,
        output_type: type[M] | dict[str, Any],
        backend_type: str | None = None,
        task_type: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Answer a prompt as structured output: `output_type` is a pydantic model class (its validated instance is
        returned) or a `response_format` dict (the parsed JSON is returned). Routing as `llm_generate`.

        Raises:
            LLMStructuredOutputError: the answer was not valid, even after the one repair request.
            LLMValidationError: `output_type` is not a model class or a `response_format` dict, or the backend's
                vendor cannot take its schema (no request sent).
            LLMError: the call failed (the manager's typed error).
        """
        manager, request, backend = await self._build_request(
            prompt, backend_type, task_type, temperature, max_tokens,
            {**kwargs, "response_format": output_type}, stream=False,
        )
        response = await manager.generate(request, backend)
        text = _content(response)
        if response.parsed is not None:
            return response.parsed
        try:  # a custom backend that does not do structured output itself: validate here, no repair
            return parse_output(output_spec(output_type), text)
        except InvalidOutput as invalid:
            raise LLMStructuredOutputError(f"the answer did not match the requested format: {invalid}"[:500],
                                           raw_text=text, errors=invalid.errors, backend=response.backend_type,
                                           model=response.model) from None

    async def llm_stream_generate(
        self,
        prompt: str | AgentPrompt,
        backend_type: str | None = None,
        task_type: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Answer a prompt as text chunks (an async generator of `str`)."""
        manager, request, backend = await self._build_request(
            prompt, backend_type, task_type, temperature, max_tokens, dict(kwargs), stream=True
        )
        chunks = manager.stream_generate(request, backend)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    async def llm_analyze_text(
        self, text: str, analysis_type: str = "general", context: str | None = None, backend_type: str | None = None
    ) -> dict[str, Any]:
        """Analyse a text; always returns a dict (with at least `analysis_type`)."""
        user = f"Text to analyze:\n{text}"
        if context:
            user += f"\n\nAdditional context:\n{context}"
        prompt = AgentPrompt(
            system_prompt=(
                f"You are an expert analyst performing {analysis_type} analysis. Reply with one JSON object only, "
                'with the keys "analysis_type" (string), "key_findings" (array of strings), "summary" (string), '
                '"confidence" (number from 0 to 1) and "details" (object).'
            ),
            user_prompt=user,
        )
        reply = await self._structured_reply(prompt, backend_type, TextAnalysis)
        parsed = extract_json(reply, expect=dict)
        if isinstance(parsed, dict):
            parsed.setdefault("analysis_type", analysis_type)
            return parsed
        findings = to_string_list(parsed) if isinstance(parsed, list) else []
        return {
            "analysis_type": analysis_type,
            "key_findings": findings,
            "summary": "" if findings else reply.strip(),
            "confidence": 0.5,
            "raw_response": reply,
        }

    async def llm_extract_insights(
        self, data: str | dict[str, Any] | list[Any], insight_type: str = "general", backend_type: str | None = None
    ) -> list[str]:
        """Insights about some data; always returns a list of strings."""
        text = json.dumps(data, indent=2, default=str) if isinstance(data, dict | list) else str(data)
        prompt = AgentPrompt(
            system_prompt=(
                f"You are an expert at extracting {insight_type} insights from data. Reply with one JSON object only: "
                '{"insights": [...]}, an array of strings, one concise, actionable insight per string.'
            ),
            user_prompt=f"Extract the key {insight_type} insights from this data:\n\n{text}",
        )
        reply = await self._structured_reply(prompt, backend_type, TextInsights)
        return to_string_list(extract_json(reply), fallback_text=reply)

    async def _structured_reply(self, prompt: AgentPrompt, backend_type: str | None, model: type[BaseModel]) -> str:
        """The JSON text of a structured answer, through `llm_generate` (so an agent's override of it still applies);
        an answer that stayed invalid after its repair is returned as it came, for the lenient reading."""
        try:
            return await self.llm_generate(prompt, backend_type=backend_type, response_format=model)
        except LLMStructuredOutputError as exc:
            self.llm_logger.warning("%s: the answer did not match %s; reading it leniently (%s)",
                                    getattr(self, "name", None) or type(self).__name__, model.__name__, exc)
            return exc.raw_text

    def get_llm_status(self) -> dict[str, Any]:
        """The manager's backends and health; `{"status": "not_initialized", "backends": []}` before first use."""
        manager = self._llm_manager
        if manager is None:
            return {"status": "not_initialized", "backends": []}
        return {
            "status": "initialized",
            "backends": manager.get_available_backends(),
            "healthy_backends": manager.get_healthy_backends(),
            "default_backend": manager.get_default_backend(),
            "health_status": manager.get_all_health_status(),
        }
