"""What the manager knows about each registered backend: its circuit breaker, its latency window, its probe results,
and the `BackendHealth` snapshot built from them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm.backends.base import LLMBackend, describe_error
from llm.core.awaitables import maybe_await
from llm.core.policy import ManagerPolicy
from llm.health.breaker import CircuitBreaker, Ticket, breaker_verdict, callers_own

if TYPE_CHECKING:
    from llm.fleet.limiter import LimiterStatus, RateLimiter
    from llm.health.shared_breaker import SharedBreaker

__all__ = ["LATENCY_WINDOW", "BackendHealth", "BackendSlot"]

#: How many recent successful calls `avg_response_time` averages over.
LATENCY_WINDOW = 50

logger = logging.getLogger("llm.manager")


@dataclass
class BackendHealth:
    """A snapshot of one backend's health. The first five fields are the ScoutAgent contract's.

    Attributes:
        backend_type: the backend's name.
        is_healthy: breaker closed and the last health probe (if any) succeeded.
        last_check: wall-clock time (epoch seconds) of the last call or probe.
        error_count: failed attempts since registration (client errors included).
        avg_response_time: mean response time of the last `LATENCY_WINDOW` successful calls, in seconds.
        breaker_state: "closed", "open" (cooling down) or "half_open" (a probe may go, or is in flight).
        consecutive_failures: counted failures in a row (server errors, timeouts, connection errors, 429).
        failure_rate: share of counted failures among the attempts in the breaker's window; None while the window
            holds fewer than `breaker_min_calls` attempts.
        last_error: the last failure of a call or a health probe (error class and message), the key masked.
        last_probe_ok: result of the last `health_check()`; None before the first.
        last_probe_latency: how long the last `health_check()` took, in seconds.
        open_until: wall-clock time at which an open breaker lets a probe through; None when closed.
        times_opened: how often the breaker opened.
        requests: attempts sent to the backend.
        rate_limit: the client-side limiter's last reading (limits, capacity left, paused until); None when the
            backend has no limiter or it has not been used yet.
        shared_state: whether limiter and breaker state are shared with other processes right now (a Redis URL is
            set and Redis answers).
    """

    backend_type: str
    is_healthy: bool
    last_check: float
    error_count: int
    avg_response_time: float
    breaker_state: str = "closed"
    consecutive_failures: int = 0
    last_error: str | None = None
    last_probe_ok: bool | None = None
    last_probe_latency: float | None = None
    open_until: float | None = None
    times_opened: int = 0
    requests: int = 0
    failure_rate: float | None = None
    rate_limit: LimiterStatus | None = None
    shared_state: bool = False


class BackendSlot:
    """One registered backend and the manager's state about it."""

    def __init__(self, name: str, backend: LLMBackend, policy: ManagerPolicy) -> None:
        self.name = name
        self.backend = backend
        self.breaker = CircuitBreaker(policy.breaker_window, policy.breaker_min_calls, policy.breaker_failure_rate,
                                      policy.breaker_cooldown, policy.breaker_cooldown_max)
        self.quota_cooldown = policy.quota_cooldown
        self.quota_cooldown_max = policy.quota_cooldown_max
        self.max_concurrency = policy.max_concurrency
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.error_count = 0
        self.requests = 0
        self.last_error: str | None = None
        self.last_check = time.time()
        self.last_probe_ok: bool | None = None
        self.last_probe_latency: float | None = None
        self.probing = False
        self._semaphore: asyncio.Semaphore | None = None
        self.limiter: RateLimiter | None = None  # set by the manager when limits or shared state are configured
        self.shared: SharedBreaker | None = None  # set by the manager when shared state is configured
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None

    def limit(self) -> asyncio.Semaphore | None:
        """The per-backend concurrency limit of the running loop, or None when unlimited."""
        if self.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore, self._semaphore_loop = asyncio.Semaphore(self.max_concurrency), loop
        return self._semaphore

    # -- outcomes of real traffic ---------------------------------------------------------------------------------

    def succeeded(self, ticket: Ticket, elapsed: float | None) -> None:
        self.breaker.record_success(ticket)
        if self.shared is not None:
            self.shared.outcome(ticket, None, 0.0)
        if elapsed is not None:
            self.latencies.append(elapsed)
        self.last_check = time.time()

    def sample_latency(self, elapsed: float) -> None:
        self.latencies.append(elapsed)

    def failed(self, ticket: Ticket | None, exc: BaseException) -> None:
        """An attempt (or a stream after its first event, `ticket` None) that ended in `exc`: counted as
        `breaker_verdict` says; what is the caller's own (`callers_own`) only gives the ticket back."""
        if callers_own(exc):
            if ticket is not None:
                self.release(ticket)
            return
        self.error_count += 1
        self.last_error = describe_error(exc, self.backend.config.secret())
        self.last_check = time.time()
        verdict = breaker_verdict(exc)
        if verdict == "quota":
            self.breaker.trip(ticket, self.quota_lockout(exc))
        elif verdict == "counted":
            self.breaker.record_failure(ticket)
        elif ticket is not None:
            self.breaker.release(ticket)
        if self.shared is not None:
            self.shared.outcome(ticket, verdict, self.quota_lockout(exc))

    def release(self, ticket: Ticket) -> None:
        """Give an admitted attempt's ticket back without an outcome (cancelled, cut by the caller's deadline), here
        and, for a half-open probe, in the fleet's breaker."""
        self.breaker.release(ticket)
        if self.shared is not None:
            self.shared.outcome(ticket, "ignored", 0.0)

    def quota_lockout(self, exc: BaseException) -> float:
        """How long a quota error locks the backend out: at least `quota_cooldown`, longer when the vendor's
        Retry-After says so, never more than `quota_cooldown_max` (an error's `retry_after` is already finite)."""
        retry_after = getattr(exc, "retry_after", None)
        wanted = max(retry_after if isinstance(retry_after, float | int) else 0.0, self.quota_cooldown)
        return min(wanted, self.quota_cooldown_max)

    # -- active probes --------------------------------------------------------------------------------------------

    async def probe(self, timeout: float) -> bool | None:
        """Run `backend.health_check()` (a models listing, never a billed call), bounded by `timeout`.

        Returns the result, or None when a probe of this backend is already running (probes never overlap).
        """
        if self.probing:
            return None
        self.probing = True
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                ok = bool(await maybe_await(self.backend.health_check()))
            reason = None if ok else self.backend.health_error or "health_check() returned False"
        except TimeoutError:
            ok, reason = False, f"health check gave no answer within {timeout:g}s"
        except Exception as exc:  # a probe reports; it does not raise (CancelledError still propagates)
            ok, reason = False, describe_error(exc, self.backend.config.secret())
        finally:
            self.probing = False
        if reason is not None:
            logger.debug("health check of %s failed: %s", self.name, reason)
            self.last_error = reason
        self.last_probe_ok, self.last_probe_latency = ok, time.monotonic() - start
        self.last_check = time.time()
        return ok

    def snapshot(self) -> BackendHealth:
        breaker = self.breaker
        state: str = breaker.state
        open_until = None if state == "closed" else time.time() + breaker.retry_in()
        shared = self.shared.last if self.shared is not None else None
        if shared is not None and shared.shared and state == "closed" and shared.state != "closed":
            state, open_until = shared.state, time.time() + shared.open_for  # opened by another process
        return BackendHealth(
            backend_type=self.name,
            is_healthy=state == "closed" and self.last_probe_ok is not False,
            last_check=self.last_check,
            error_count=self.error_count,
            avg_response_time=sum(self.latencies) / len(self.latencies) if self.latencies else 0.0,
            breaker_state=state,
            consecutive_failures=breaker.consecutive_failures,
            last_error=self.last_error,
            last_probe_ok=self.last_probe_ok,
            last_probe_latency=self.last_probe_latency,
            open_until=open_until,
            times_opened=breaker.times_opened,
            requests=self.requests,
            failure_rate=breaker.failure_ratio(),
            rate_limit=self.limiter.snapshot(self.name) if self.limiter is not None else None,
            shared_state=self.limiter is not None and self.limiter.shared,
        )
