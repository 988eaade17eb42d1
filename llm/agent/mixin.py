"""`LLMAgentMixin`: what an agent class inherits to call the manager (generation, streaming, structured answers,
per-task routing). Routing lives in `llm.agent.routing`, the analysis helpers' prompts and replies in
`llm.agent.analysis`; behaviour in README "Agents" and the ScoutAgent contract."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from pydantic import BaseModel

from llm.agent.analysis import (
    TextAnalysis,
    TextInsights,
    analysis_prompt,
    insights_prompt,
    read_analysis,
    read_insights,
)
from llm.agent.calls import _content, _prompt_messages, backend_name, shared_llm_manager
from llm.agent.routing import agent_key, name_defaults, reroute, route
from llm.base import LLMRequest
from llm.errors import LLMStructuredOutputError
from llm.output.parse import InvalidOutput, parse_output
from llm.output.spec import output_spec
from llm.prompts import AgentPrompt

if TYPE_CHECKING:
    from llm.manager import LLMManager

__all__ = ["LLMAgentMixin"]

M = TypeVar("M", bound=BaseModel)

_UNNAMED_LOGGER = "llm.agent.unknown"


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
        self.preferred_backend, self.task_backend_preferences = name_defaults(str(getattr(self, "name", None) or ""))

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
        return agent_key(str(getattr(self, "name", None) or type(self).__name__))

    def _resolve_backend_and_model(
        self, task_type: str | None, explicit_backend: Any
    ) -> tuple[str | None, str | None]:
        """(backend, model) for a call; None means "the manager's default" (README "Agents")."""
        key = self._agent_key()
        chosen = route(key, task_type, self.task_backend_preferences, self.preferred_backend, explicit_backend)
        manager = self._llm_manager
        known = manager.get_available_backends() if manager is not None else None
        backend, model, _ = reroute(chosen, known, self._agent_label(), key, self.llm_logger)
        return backend, model

    def _agent_label(self) -> str:
        return str(getattr(self, "name", None) or type(self).__name__)

    def get_optimal_backend(self, task_type: str | None = None) -> str | None:
        """The backend `llm_generate(task_type=task_type)` would use now (None: no backend known yet)."""
        backend, _ = self._resolve_backend_and_model(task_type, None)
        if backend is None and self._llm_manager is not None:
            return self._llm_manager.get_default_backend()
        return backend

    def initialize_llm(self) -> None:
        """A no-op ScoutAgent's agents call: the manager is fetched lazily, on the first call."""

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
        self, prompt: str | AgentPrompt, backend_type: str | None = None, task_type: str | None = None,
        temperature: float | None = None, max_tokens: int | None = None, **kwargs: Any,
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
        self, prompt: str | AgentPrompt, output_type: type[M] | dict[str, Any], backend_type: str | None = None,
        task_type: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
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
            return parse_output(output_spec(output_type), text, lenient=True)
        except InvalidOutput as invalid:
            raise LLMStructuredOutputError(f"the answer did not match the requested format: {invalid}"[:500],
                                           raw_text=text, errors=invalid.errors, backend=response.backend_type,
                                           model=response.model) from None

    async def llm_stream_generate(
        self, prompt: str | AgentPrompt, backend_type: str | None = None, task_type: str | None = None,
        temperature: float | None = None, max_tokens: int | None = None, **kwargs: Any,
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
        prompt = analysis_prompt(text, analysis_type, context)
        return read_analysis(await self._structured_reply(prompt, backend_type, TextAnalysis), analysis_type)

    async def llm_extract_insights(
        self, data: str | dict[str, Any] | list[Any], insight_type: str = "general", backend_type: str | None = None
    ) -> list[str]:
        """Insights about some data; always returns a list of strings."""
        prompt = insights_prompt(data, insight_type)
        return read_insights(await self._structured_reply(prompt, backend_type, TextInsights))

    async def _structured_reply(self, prompt: AgentPrompt, backend_type: str | None, model: type[BaseModel]) -> str:
        """The JSON text of a structured answer, through `llm_generate` (so an agent's override of it still applies);
        an answer that stayed invalid after its repair is returned as it came, for the lenient reading."""
        try:
            return await self.llm_generate(prompt, backend_type=backend_type, response_format=model)
        except LLMStructuredOutputError as exc:
            self.llm_logger.warning("%s: the answer did not match %s; reading it leniently (%s)",
                                    self._agent_label(), model.__name__, exc)
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
