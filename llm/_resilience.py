"""The manager's reliability machinery, free of any vendor detail: its policy, the per-call deadline, the circuit
breaker, the backoff, and the tables that say which errors are retried, which count against a backend's health and
which may fail over. It sees only the `llm.errors` tree, never an SDK.

    retried            an `LLMBackendError` whose `retryable` is True (408, 409, 429 but not quota, 5xx, 529,
                       connection, timeout) -- never CancelledError, never a skipped (circuit-open) backend
    counts for breaker server-side failures: 5xx, 529, timeouts, connection errors, 429, mid-stream failures,
                       and anything a custom backend raises outside the `llm.errors` tree; quota trips it at once
    blocks failover    an invalid request (validation, 400, 413, 422 and their context-length and content-filter
                       subclasses): it would fail everywhere, and shopping for a laxer content filter is not ours to do
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm.errors import (
    LLMBackendError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Deadline",
    "LLMCircuitOpenError",
    "LLMDeadlineExceededError",
    "ManagerPolicy",
    "Ticket",
    "backoff_delay",
    "blocks_failover",
    "breaker_verdict",
    "is_retryable",
    "retry_wait",
]

BreakerState = Literal["closed", "open", "half_open"]
Verdict = Literal["counted", "quota", "ignored"]


class LLMCircuitOpenError(LLMServerError):
    """The backend's circuit breaker is open, so no request was sent; `retry_after` says when a probe is allowed."""


class LLMDeadlineExceededError(LLMTimeoutError):
    """The call's total deadline passed, or would pass before the next attempt could start.

    Attributes:
        errors: the error that ended each backend's turn, in order.
        attempts: the attempt trail (dicts with backend, model, outcome, elapsed), as in `metadata["attempts"]`.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[BaseException] = (),
        attempts: Sequence[dict[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)
        self.errors = list(errors)
        self.attempts = list(attempts)


@dataclass(frozen=True)
class ManagerPolicy:
    """Every number the manager's reliability behaviour uses. `None` means "take it from the configuration".

    Attributes:
        timeout: total deadline of one call, across retries and failover; None: `SCOUT_LLM_TIMEOUT`.
        retry_attempts: attempts per backend per call; None: that backend's `LLMConfig.retry_attempts`.
        retry_delay: first backoff in seconds, doubling after; None: that backend's `LLMConfig.retry_delay`.
        backoff_max: cap on one backoff sleep.
        jitter: backoff is multiplied by a random factor in [1 - jitter, 1 + jitter]; a Retry-After wait by
            [1, 1 + jitter / 5] (never shorter than the vendor asked, at most 5% longer by default).
        retry_after_max: the longest Retry-After honoured; above it the backend is not retried in this call.
        attempt_timeout: bound of one non-streamed attempt; None: that backend's `LLMConfig.timeout`.
        first_chunk_timeout: bound on opening a stream up to its first event; None: the backend's `LLMConfig.timeout`.
        idle_timeout: longest silence allowed between two stream events.
        min_attempt_time: an attempt (or the backoff sleep before it) is not started unless at least this much of the
            deadline would remain for it (at most a quarter of the deadline; a call's first attempt always starts).
        breaker_threshold: consecutive counted failures that open a backend's breaker.
        breaker_cooldown: first open period; each failed half-open probe doubles it, up to `breaker_cooldown_max`.
        quota_cooldown: open period after a quota error that carried no Retry-After.
        health_check_interval: seconds between background `health_check()` rounds; None or 0: no background probes.
        health_check_timeout: bound of one `health_check()`.
        max_concurrency: in-flight calls allowed per backend (streams hold their slot to the end); None: no limit.
        fallback_order: backend names, in failover order after the first; None: `SCOUT_LLM_FALLBACK_ORDER`.
    """

    timeout: float | None = None
    retry_attempts: int | None = None
    retry_delay: float | None = None
    backoff_max: float = 30.0
    jitter: float = 0.25
    retry_after_max: float = 60.0
    attempt_timeout: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float = 30.0
    min_attempt_time: float = 0.25
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    breaker_cooldown_max: float = 600.0
    quota_cooldown: float = 3600.0
    health_check_interval: float | None = 300.0
    health_check_timeout: float = 10.0
    max_concurrency: int | None = None
    fallback_order: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "attempt_timeout", "first_chunk_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if self.retry_attempts is not None and self.retry_attempts < 1:
            raise ValueError(f"retry_attempts must be >= 1, got {self.retry_attempts!r}")
        if self.breaker_threshold < 1 or (self.max_concurrency is not None and self.max_concurrency < 1):
            raise ValueError("breaker_threshold and max_concurrency must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.fallback_order is not None:
            object.__setattr__(self, "fallback_order", tuple(name.strip().lower() for name in self.fallback_order))


class Deadline:
    """A budget of seconds that started now, read on the monotonic clock."""

    __slots__ = ("budget", "expires")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.expires = time.monotonic() + budget

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())


# -- error tables -----------------------------------------------------------------------------------------------------

#: Errors that mean the request itself is wrong: another backend would reject it too.
NO_FAILOVER: tuple[type[Exception], ...] = (LLMValidationError, LLMBadRequestError)
#: Errors that say the backend (not the request) is failing.
BREAKER_COUNTED: tuple[type[Exception], ...] = (
    LLMServerError, LLMTimeoutError, LLMConnectionError, LLMStreamError, LLMRateLimitError,
)


def is_retryable(exc: BaseException) -> bool:
    """Whether the manager may send the same request to the same backend again."""
    return isinstance(exc, LLMBackendError) and exc.retryable and not isinstance(exc, LLMCircuitOpenError)


def blocks_failover(exc: BaseException) -> bool:
    """Whether an error ends the whole call instead of moving on to the next backend."""
    return isinstance(exc, NO_FAILOVER)


def breaker_verdict(exc: BaseException) -> Verdict:
    """How a failed attempt weighs on the backend's circuit breaker."""
    if isinstance(exc, LLMQuotaExceededError):
        return "quota"
    if isinstance(exc, LLMCircuitOpenError):
        return "ignored"
    if isinstance(exc, BREAKER_COUNTED) or not isinstance(exc, LLMError):
        return "counted"
    return "ignored"


# -- backoff ----------------------------------------------------------------------------------------------------------


def backoff_delay(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Backoff after failed attempt number `attempt` (1-based): `base * 2**(attempt-1)`, jittered, capped."""
    raw = min(cap, base * 2.0 ** min(attempt - 1, 30))
    return min(cap, raw * random.uniform(1 - jitter, 1 + jitter))


def retry_wait(exc: BaseException | None, attempt: int, base: float, cap: float, jitter: float) -> float:
    """The sleep before the next attempt: the vendor's Retry-After when it sent one (plus up to `jitter / 5` of it,
    never less), else the exponential backoff."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return float(retry_after) * random.uniform(1.0, 1.0 + jitter / 5)
    return backoff_delay(attempt, base, cap, jitter)


# -- circuit breaker --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Ticket:
    """Permission to send one attempt; `probe` marks the single attempt a half-open breaker lets through."""

    probe: bool = False


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive counted failures -> one half-open probe after the cooldown.

    A successful probe closes the breaker; a failed one reopens it with the cooldown doubled (up to `cooldown_max`).
    Results of attempts admitted before the breaker opened do not move it again, so a burst of concurrent failures
    opens it once. Times are on the monotonic clock (`clock`).
    """

    def __init__(
        self, threshold: int, cooldown: float, cooldown_max: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.clock = clock
        self.cooldown = cooldown
        self.consecutive_failures = 0
        self.times_opened = 0
        self.open_until: float | None = None  # None while closed
        self.probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self.open_until is None:
            return "closed"
        if self.probe_in_flight or self.clock() >= self.open_until:
            return "half_open"
        return "open"

    def retry_in(self) -> float:
        """Seconds until an attempt would be admitted (0 when it would be now)."""
        if self.open_until is None:
            return 0.0
        return max(0.0, self.open_until - self.clock())

    def would_admit(self) -> bool:
        return self.state == "closed" or (self.state == "half_open" and not self.probe_in_flight)

    def admit(self) -> Ticket | None:
        """A ticket for one attempt, or None when the breaker refuses it."""
        state = self.state
        if state == "closed":
            return Ticket()
        if state == "open" or self.probe_in_flight:
            return None
        self.probe_in_flight = True
        return Ticket(probe=True)

    def record_success(self, ticket: Ticket) -> None:
        if ticket.probe:
            self.probe_in_flight = False
            self.open_until = None
            self.cooldown = self.base_cooldown
        if self.open_until is None:
            self.consecutive_failures = 0

    def record_failure(self, ticket: Ticket | None) -> None:
        """A counted failure; `ticket` None for a failure found after the attempt was settled (mid-stream)."""
        if ticket is not None and ticket.probe:
            self.probe_in_flight = False
            self.consecutive_failures += 1
            self.cooldown = min(self.cooldown * 2, self.cooldown_max)
            self._open(self.cooldown)
        elif self.open_until is None:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.threshold:
                self._open(self.cooldown)

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without saying anything about the backend (cancelled, or a client error)."""
        if ticket.probe:
            self.probe_in_flight = False

    def trip(self, ticket: Ticket | None, cooldown: float) -> None:
        """Open now for at least `cooldown` seconds, whatever the state (an exhausted quota)."""
        if ticket is not None and ticket.probe:
            self.probe_in_flight = False
        until = self.clock() + cooldown
        if self.open_until is None or self.state != "open":
            self.times_opened += 1
        self.open_until = max(until, self.open_until or until)

    def _open(self, cooldown: float) -> None:
        self.times_opened += 1
        self.open_until = self.clock() + cooldown
