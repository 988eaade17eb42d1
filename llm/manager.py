"""`LLMManager`: registration, routing and the lifecycle of the backends; each call is handed to `llm.call`, health
to a `HealthMonitor`. What a call promises (retries, failover, deadline, breaker, streams, cost) is in README.md
("Call", "Routing and fallback", "Health"); where each part lives is in ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from enum import Enum
from types import TracebackType
from typing import Any

from llm.accounting.ledger import UsageLedger
from llm.accounting.span import NOOP_SPAN, CallSpan
from llm.accounting.telemetry import LLMTelemetry
from llm.backends.base import LLMBackend, describe_error, quiet_cleanup
from llm.backends.bootstrap import register_configured_backends
from llm.base import LLMBackendType, LLMRequest, LLMResponse, StreamEvent, TextDelta
from llm.call.attempt import generate_op, model_for
from llm.call.chain import Call
from llm.call.relay import StreamScope, relay
from llm.call.retry import Deadline
from llm.call.routing import failover_order, not_available, with_model
from llm.config import LLMSettings, ScoutConfig, get_config
from llm.core.awaitables import maybe_await
from llm.core.bounds import checked_seconds
from llm.core.names import canonical_backend
from llm.core.policy import ManagerPolicy
from llm.core.validation import validate_request
from llm.errors import LLMCircuitOpenError, LLMConfigError, LLMDeadlineExceededError, LLMError
from llm.fleet.limiter import RateLimiter
from llm.health.limits import attach_limits
from llm.health.monitor import HealthMonitor
from llm.health.slot import BackendHealth, BackendSlot

__all__ = [
    "BackendHealth",
    "LLMCircuitOpenError",
    "LLMDeadlineExceededError",
    "LLMManager",
    "ManagerPolicy",
    "get_llm_manager",
    "initialize_llm_backends",
    "reset_llm_manager",
]

logger = logging.getLogger("llm.manager")


def backend_name(value: str | Enum) -> str:
    """The registry key of a backend name, alias (`anthropic`, `google`) or `LLMBackendType`."""
    return canonical_backend(value)


class LLMManager:
    """Routes requests to registered backends with retries, failover, deadlines and health tracking.

    Args:
        config: the settings to read defaults from (`SCOUT_LLM_TIMEOUT`, `SCOUT_LLM_FALLBACK_ORDER`); read lazily
            from `get_config()` when None. Construction has no side effect.
        telemetry: the OpenTelemetry recorder (default: the global providers, used when an SDK is configured).
        price_providers: a genai-prices provider id per backend name, for a backend whose `base_url` genai-prices
            does not recognise (a gateway or proxy in front of a known vendor): `{"openai": "openai"}`.
        **policy_overrides: fields of `ManagerPolicy` (e.g. `timeout=5, breaker_min_calls=3, budget_usd=2.5`).
    """

    def __init__(self, config: ScoutConfig | None = None, *, telemetry: LLMTelemetry | None = None,
                 price_providers: Mapping[str, str] | None = None, **policy_overrides: Any) -> None:
        self._config = config
        self.policy = ManagerPolicy.from_options(policy_overrides)
        self.telemetry = telemetry if telemetry is not None else LLMTelemetry()
        self.ledger = UsageLedger(self.policy.budget_usd)
        self.price_providers = {backend_name(name): provider for name, provider in (price_providers or {}).items()}
        self._slots: dict[str, BackendSlot] = {}
        self._unavailable: dict[str, str] = {}
        self._default: str | None = None
        self._health = HealthMonitor(self._slots, lambda: self.policy)
        self._limiter: RateLimiter | None = None  # built at registration when limits or shared state are configured

    def __repr__(self) -> str:
        return f"LLMManager(backends={list(self._slots)}, default={self._default!r})"

    async def __aenter__(self) -> LLMManager:
        await self._health.bind()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.cleanup()

    @property
    def config(self) -> ScoutConfig:
        """The settings in use (the global `get_config()` unless one was given)."""
        return self._config if self._config is not None else get_config()

    @property
    def backends(self) -> dict[str, LLMBackend]:
        """Registered backends by name, in registration order (a new dict on each access)."""
        return {name: slot.backend for name, slot in self._slots.items()}

    @property
    def health_status(self) -> dict[str, BackendHealth]:
        """Same as `get_all_health_status()`."""
        return self.get_all_health_status()

    # -- registration -----------------------------------------------------------------------------------------------

    async def register_backend(self, backend: LLMBackend, is_default: bool = False) -> bool:
        """Initialize a backend and register it under `backend.config.backend_type.value`.

        `initialize()` may return a bool or an awaitable of one. Returns False, registering nothing, when it returns
        False or raises. Registering a name again replaces (and cleans up) the previous backend. The first backend
        registered becomes the default, as does one registered with `is_default=True`.

        Raises:
            LLMConfigError: its rate limits or shared state cannot be attached (a Redis URL with a bad port); nothing
            is registered and the backend is cleaned up.
        """
        await self._health.bind()
        name = backend_name(backend.config.backend_type)
        try:
            ready = await maybe_await(backend.initialize())
        except Exception as exc:
            logger.error("Could not register %s: %s", name, describe_error(exc, backend.config.secret()))
            return False
        if not ready:
            logger.error("Could not register %s: initialize() returned False", name)
            return False
        slot = BackendSlot(name, backend, self.policy)
        try:  # the slot is complete, limits attached, before it is registered: a failure registers nothing
            self._limiter = attach_limits(slot, self._limiter, self.policy, self.config.llm)
        except LLMConfigError:
            await quiet_cleanup(backend)
            raise
        previous = self._slots.get(name)
        self._slots[name] = slot
        self._unavailable.pop(name, None)
        if previous is not None and previous.backend is not backend:
            await quiet_cleanup(previous.backend)
        if is_default or self._default is None:
            self._default = name
        logger.info("Registered %s backend (model %s)%s", name, backend.config.model_name,
                    " as default" if self._default == name else "")
        return True

    async def unregister_backend(self, backend_type: str | LLMBackendType) -> bool:
        """Clean up and remove a backend; False when it is not registered. A removed default passes to the next."""
        name = backend_name(backend_type)
        slot = self._slots.pop(name, None)
        if slot is None:
            return False
        if self._default == name:
            self._default = next(iter(self._slots), None)
        await quiet_cleanup(slot.backend)
        if not self._slots:
            await self._health.stop()
        return True

    def set_default_backend(self, backend_type: str | LLMBackendType) -> bool:
        """Make a registered backend the default; False (and an error log) when it is not registered."""
        name = backend_name(backend_type)
        if name not in self._slots:
            logger.error("Cannot make %s the default: it is not registered", name)
            return False
        self._default = name
        return True

    def get_default_backend(self) -> str | None:
        return self._default

    def get_available_backends(self) -> list[str]:
        """Registered backend names, in registration order."""
        return list(self._slots)

    @property
    def unavailable_backends(self) -> dict[str, str]:
        """Backends the settings configure that could not be registered, with why and the fix (a copy)."""
        return dict(self._unavailable)

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Record that a configured backend could not be registered (`initialize_llm_backends` does)."""
        self._unavailable[backend_name(name)] = reason

    # -- calls ------------------------------------------------------------------------------------------------------

    async def generate(
        self, request: LLMRequest, backend_type: str | LLMBackendType | None = None, *, fallback: bool = True
    ) -> LLMResponse:
        """Answer a request; `backend_type` goes first in the chain, `fallback=False` uses it alone.

        `backend_type` is a backend name (`"claude"`, or its alias `"anthropic"`; `"gemini"` or `"google"`), an
        `LLMBackendType`, or `"provider:model"` (`"openai:gpt-4.1-mini"`), which also picks the model.
        `response.backend_type` names the backend that served; `response.metadata["attempts"]` lists every attempt.

        Raises:
            LLMError: "No LLM backends available"; "Backend not available: <name>: <why> (registered: ...)" -- an
            `LLMValidationError` for a name no backend has (it lists the known ones), an `LLMConfigError` for one
            not configured (it says how to configure it). No request is sent.
            LLMValidationError: an invalid request (no request sent); the serving backend's own error when only one
            was tried; LLMAllBackendsFailedError; LLMCircuitOpenError; LLMDeadlineExceededError.
        """
        call = await self._new_call(request, backend_type, fallback)
        try:
            with self._span(call, stream=False):
                try:
                    response, slot = await call.run(generate_op, self._attempt_limit)
                except Exception:
                    self.ledger.record_attempts(call.attempts)
                    raise
                return call.finish(response, slot)
        finally:
            self.ledger.release(call.reserved)

    async def stream(
        self, request: LLMRequest, backend_type: str | LLMBackendType | None = None, *, fallback: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """The typed event stream: `TextDelta` / `ToolCallDelta` events, then one `ResponseDone` with the whole
        answer (usage, tool calls, finish reason, `metadata["attempts"]`). Raises as `generate` does, before the
        first event; after it, `LLMStreamError` with the partial text."""
        call = await self._new_call(request, backend_type, fallback)
        events = relay(call, self._first_chunk_limit)
        async with StreamScope(self.ledger, self._span(call, stream=True), call, events):
            async for event in events:
                yield event

    async def stream_generate(
        self, request: LLMRequest, backend_type: str | LLMBackendType | None = None, *, fallback: bool = True
    ) -> AsyncGenerator[str, None]:
        """The answer's text as it arrives (the ScoutAgent shape); see `stream` for the guarantees."""
        call = await self._new_call(request, backend_type, fallback)
        events = relay(call, self._first_chunk_limit)  # not through `stream`: one generator less per chunk
        async with StreamScope(self.ledger, self._span(call, stream=True), call, events):
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    yield event.text

    async def _new_call(self, request: LLMRequest, backend_type: str | LLMBackendType | None, fallback: bool) -> Call:
        await self._health.bind()
        if isinstance(backend_type, str) and not isinstance(backend_type, Enum):
            backend_type, request = with_model(backend_type, request)
        slots = [self._slots[name] for name in self._chain(backend_type, fallback)]
        bounds = getattr(slots[0].backend, "temperature_range", None)
        validate_request(request, bounds if isinstance(bounds, tuple) else (0.0, 2.0))  # a Mock backend has none
        policy, settings = self.policy, self.config.llm  # the settings read once per call
        timeout = checked_seconds("timeout: the call deadline", policy.timeout or settings.timeout,
                                  error=LLMConfigError)
        call = Call(slots, request, policy, Deadline(timeout), self._limiter)
        call.ledger = ledger = self.ledger
        if self.price_providers:
            call.price_providers = self.price_providers
        call.stream_timeout = policy.stream_timeout or settings.stream_timeout
        budget = ledger.budget_usd = self._budget(settings)
        if budget is not None:  # released by the caller
            call.reserved = ledger.reserve(call.estimated_cost)
        return call

    def _budget(self, settings: LLMSettings | None = None) -> float | None:
        budget = self.policy.budget_usd
        return budget if budget is not None else (settings or self.config.llm).budget_usd

    def _span(self, call: Call, stream: bool) -> CallSpan:
        """The call's telemetry span (the shared no-op one when telemetry is off), also handed to the call for its
        attempts. Activated for `generate` only: a stream's block spans yields to the caller."""
        if not self.telemetry.enabled:
            return NOOP_SPAN
        first = call.slots[0]
        span = call.span = self.telemetry.start_call(call.request, model_for(first.backend, call.request), first.name,
                                                     base_url=first.backend.config.base_url, stream=stream,
                                                     activate=not stream)
        return span

    def usage_summary(self) -> dict[str, Any]:
        """What the calls of this manager used and cost, per backend and model, and the budget.

        `{"by_backend": {"openai": {"gpt-4.1-mini": {"calls", "errors", "prompt_tokens", ..., "cost_usd",
        "unknown_cost_calls"}}}, "total": {...}, "budget_usd", "spent_usd", "remaining_usd"}`. `cost_usd` is the
        known spend: a call whose price is unknown counts in `unknown_cost_calls`, not as zero.
        """
        self.ledger.budget_usd = self._budget()
        return self.ledger.summary()

    def _chain(self, backend_type: str | LLMBackendType | None, fallback: bool) -> list[str]:
        if backend_type:
            first = backend_name(backend_type)
            if first not in self._slots:
                raise not_available(first, self._slots, self._unavailable)
        elif self._default is None or self._default not in self._slots:
            raise LLMError("No LLM backends available")
        else:
            first = self._default
        if not fallback or len(self._slots) == 1:  # one backend: no fallback order to rank
            return [first]
        configured = self.policy.fallback_order
        return failover_order(first, self._slots, configured if configured is not None
                              else self.config.llm.fallback_order)

    # -- fleet: rate limits and shared state ---------------------------------------------------------------------------

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The client-side rate limiter; None when no backend has a limit and no Redis URL is set (nothing to pay)."""
        return self._limiter

    def _attempt_limit(self, slot: BackendSlot) -> float:
        return self.policy.attempt_timeout or float(slot.backend.config.timeout)

    def _first_chunk_limit(self, slot: BackendSlot) -> float:
        return self.policy.first_chunk_timeout or float(slot.backend.config.timeout)

    # -- health -----------------------------------------------------------------------------------------------------

    def get_backend_health(self, backend_type: str | LLMBackendType) -> BackendHealth | None:
        """A snapshot of one backend's health, or None when it is not registered."""
        return self._health.health(backend_name(backend_type))

    def get_all_health_status(self) -> dict[str, BackendHealth]:
        """Snapshots (copies: changing them changes nothing) of every backend's health, by name."""
        return self._health.all_health()

    def get_healthy_backends(self) -> list[str]:
        """Backends whose breaker is closed and whose last probe (if any) succeeded."""
        return self._health.healthy()

    async def check_health(self) -> dict[str, bool | None]:
        """Probe every backend now with its `health_check()`; None for a backend whose probe is already running."""
        return await self._health.check()

    def get_llm_status(self) -> dict[str, Any]:
        """`backends`, `healthy_backends`, `default_backend` and `health_status` (name -> `BackendHealth`)."""
        return {
            "backends": self.get_available_backends(),
            "healthy_backends": self.get_healthy_backends(),
            "default_backend": self._default,
            "health_status": self.get_all_health_status(),
        }

    # -- lifecycle --------------------------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Stop the background task, clean up every backend (errors are logged) and forget them all."""
        async with self._health.closing():
            slots, self._default = list(self._slots.values()), None
            self._slots.clear()  # the monitor holds this dict: emptied, never replaced
            for slot in slots:
                await quiet_cleanup(slot.backend)
                if slot.shared is not None:
                    await slot.shared.drain()
            limiter, self._limiter = self._limiter, None
            if limiter is not None:
                await limiter.aclose()

# -- the global manager -----------------------------------------------------------------------------------------------

_manager: LLMManager | None = None


def get_llm_manager() -> LLMManager:
    """The process-wide manager, created on first use (without any side effect)."""
    global _manager
    if _manager is None:
        _manager = LLMManager()
    return _manager


async def reset_llm_manager() -> None:
    """Clean up and forget the global manager (for tests and scripts); the next `get_llm_manager()` makes a new one."""
    global _manager
    manager, _manager = _manager, None
    if manager is not None:
        await manager.cleanup()


async def initialize_llm_backends(manager: LLMManager | None = None) -> None:
    """Register every backend the settings configure on `manager` (default: the global one); README.md
    ("Configure") says which and which becomes the default. No billed call is made; safe to call again and
    concurrently (backends already registered are left alone); a backend's failure is recorded, never raised."""
    manager = manager if manager is not None else get_llm_manager()
    await manager._health.bind()
    assert manager._health.init_lock is not None
    async with manager._health.init_lock:
        await register_configured_backends(manager, manager.config)

