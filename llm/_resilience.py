"""The manager's reliability machinery, free of any vendor detail: its policy, the per-call deadline, the circuit
breaker, the backoff, and the tables that say which errors are retried, which count against a backend's health and
which may fail over. It sees only the `llm.errors` tree, never an SDK.

    retried            an `LLMBackendError` whose `retryable` is True (408, 409, 429 but not quota, 5xx, 529,
                       connection, timeout) -- never CancelledError, never a skipped (circuit-open) backend
    counts for breaker backend-side failures only: 5xx, 529, timeouts, connection errors, 429, mid-stream
                       failures, and an `OSError` from a custom backend; quota trips it at once (capped). Never
                       counted: invalid requests (ours or the vendor's 4xx verdict), auth errors, a custom backend's
                       other exceptions (a bug on our side of the wire), cancellation
    blocks failover    an invalid request (validation, 400, 413, 422 and their context-length and content-filter
                       subclasses): it would fail everywhere, and shopping for a laxer content filter is not ours to do
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from llm.errors import (
    LLMBackendError,
    LLMBadRequestError,
    LLMCircuitOpenError,
    LLMConnectionError,
    LLMError,
    LLMLocalRateLimitError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMStructuredOutputError,
    LLMTimeoutError,
    LLMValidationError,
)
from llm.names import canonical_backend

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Deadline",
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
        breaker_window: seconds of recent attempts the breaker judges (a sliding time window).
        breaker_min_calls: attempts the window must hold before the breaker may open.
        breaker_failure_rate: the breaker opens when the share of counted failures in the window reaches this.
        breaker_cooldown: first open period; each failed half-open probe doubles it, up to `breaker_cooldown_max`.
        quota_cooldown: open period after a quota error (at least; a longer Retry-After is honoured up to the max).
        quota_cooldown_max: the longest a quota error may lock a backend out, whatever the vendor asked.
        health_check_interval: seconds between background `health_check()` rounds; None or 0: no background probes.
        health_check_timeout: bound of one `health_check()`.
        max_concurrency: in-flight calls allowed per backend (streams hold their slot to the end); None: no limit.
        fallback_order: backend names, in failover order after the first; None: `SCOUT_LLM_FALLBACK_ORDER`.
        budget_usd: spend budget in USD (a call that would start once it is spent raises `LLMBudgetExceededError`);
            None: `SCOUT_LLM_BUDGET_USD` (unset: no budget).
        rate_limits: backend name -> `(rpm, tpm)` client-side limits per minute (None or 0: no such limit); a
            backend listed here ignores its `SCOUT_<BACKEND>_RPM/TPM`.
        redis_url: where a fleet shares limiter windows, pauses and breaker state; None: `SCOUT_LLM_REDIS_URL`.
        structured_failover: whether an answer that failed its `response_format` (after its one repair) moves the
            call on to the next backend; by default the `LLMStructuredOutputError` ends the call.
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
    breaker_window: float = 10.0
    breaker_min_calls: int = 20
    breaker_failure_rate: float = 0.5
    breaker_cooldown: float = 30.0
    breaker_cooldown_max: float = 600.0
    quota_cooldown: float = 3600.0
    quota_cooldown_max: float = 3600.0
    health_check_interval: float | None = 300.0
    health_check_timeout: float = 10.0
    max_concurrency: int | None = None
    fallback_order: tuple[str, ...] | None = None
    budget_usd: float | None = None
    rate_limits: Mapping[str, tuple[int | None, int | None]] | None = None
    redis_url: str | None = None
    structured_failover: bool = False

    def __post_init__(self) -> None:
        self._check_numbers()
        if not (_is_number(self.breaker_failure_rate) and 0 < self.breaker_failure_rate <= 1):
            raise ValueError(f"breaker_failure_rate must be in (0, 1], got {self.breaker_failure_rate!r}")
        if self.budget_usd is not None and not (_is_number(self.budget_usd) and 0 <= self.budget_usd < math.inf):
            raise ValueError(f"budget_usd must be a finite number of USD >= 0, got {self.budget_usd!r}")
        if not (_is_number(self.jitter) and 0 <= self.jitter < 1):
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.rate_limits is not None:
            object.__setattr__(self, "rate_limits", _checked_limits(self.rate_limits))
        if self.redis_url is not None and not str(self.redis_url).startswith(("redis://", "rediss://")):
            raise ValueError("redis_url must be a redis:// or rediss:// URL")
        if self.fallback_order is not None:
            object.__setattr__(self, "fallback_order", tuple(name.strip().lower() for name in self.fallback_order))


    def _check_numbers(self) -> None:
        """Durations are finite seconds (> 0, or >= 0 where zero means "none"), counts integers >= 1."""
        for name in POSITIVE_SECONDS:
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("retry_delay", "min_attempt_time", "health_check_interval"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        for name in ("retry_attempts", "breaker_min_calls", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


#: ManagerPolicy fields that are durations which must be > 0 (None, where allowed, means "from the configuration").
POSITIVE_SECONDS = ("timeout", "attempt_timeout", "first_chunk_timeout", "backoff_max", "retry_after_max",
                    "idle_timeout", "breaker_window", "breaker_cooldown", "breaker_cooldown_max", "quota_cooldown",
                    "quota_cooldown_max", "health_check_timeout")


def _checked_limits(limits: Mapping[str, tuple[int | None, int | None]]) -> dict[str, tuple[int | None, int | None]]:
    checked = {}
    for name, pair in limits.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(
                value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
                for value in pair)):
            raise ValueError(f"rate_limits[{name!r}] must be (rpm, tpm), each a whole number >= 0 or None")
        checked[canonical_backend(name)] = pair
    return checked


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
NO_FAILOVER: tuple[type[Exception], ...] = (LLMValidationError, LLMBadRequestError, LLMStructuredOutputError)
#: Errors that say the backend (not the request) is failing.
BREAKER_COUNTED: tuple[type[Exception], ...] = (
    LLMServerError, LLMTimeoutError, LLMConnectionError, LLMStreamError, LLMRateLimitError,
)


def is_retryable(exc: BaseException) -> bool:
    """Whether the manager may send the same request to the same backend again."""
    return isinstance(exc, LLMBackendError) and exc.retryable and not isinstance(exc, LLMCircuitOpenError)


def blocks_failover(exc: BaseException, structured_failover: bool = False) -> bool:
    """Whether an error ends the whole call instead of moving on to the next backend (a schema failure does not when
    the policy's `structured_failover` asks for it)."""
    if structured_failover and isinstance(exc, LLMStructuredOutputError):
        return False
    return isinstance(exc, NO_FAILOVER)


def breaker_verdict(exc: BaseException) -> Verdict:
    """How a failed attempt weighs on the backend's circuit breaker."""
    if isinstance(exc, LLMQuotaExceededError):
        return "quota"
    if isinstance(exc, LLMCircuitOpenError | LLMLocalRateLimitError):  # no request was sent
        return "ignored"
    if isinstance(exc, BREAKER_COUNTED) or (isinstance(exc, OSError) and not isinstance(exc, LLMError)):
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
    """A failure-rate breaker (the model of Envoy's outlier detection and resilience4j's `CircuitBreaker`).

    Closed: every attempt's outcome enters a sliding window of the last `window` seconds. When the window holds at
    least `min_calls` outcomes and the share of counted failures reaches `failure_rate`, the breaker opens for
    `cooldown` seconds. Then it is half-open: one probe attempt goes through; success closes it (with a fresh window),
    failure reopens it with the cooldown doubled (up to `cooldown_max`). Results of attempts admitted before the
    breaker opened do not move it again, so a burst of concurrent failures opens it once.

    A quota trip (`trip`) is separate: it refuses every attempt until its own end, and nothing -- not a successful
    probe, not a success of an attempt admitted earlier -- lifts it sooner. Times are on the monotonic clock.
    """

    def __init__(
        self,
        window: float,
        min_calls: int,
        failure_rate: float,
        cooldown: float,
        cooldown_max: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.base_cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.clock = clock
        self.cooldown = cooldown
        self.outcomes: deque[tuple[float, bool]] = deque()  # (when, failed) of recent attempts
        self.failures = 0  # failed outcomes in `outcomes`
        self.consecutive_failures = 0
        self.times_opened = 0
        self.open_until: float | None = None  # None while closed
        self.quota_until: float | None = None  # a quota lockout, independent of the failure rate
        self.probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        now = self.clock()
        if self.quota_until is not None:
            if now < self.quota_until:
                return "open"
            self.quota_until = None
        if self.open_until is None:
            return "closed"
        if self.probe_in_flight or now >= self.open_until:
            return "half_open"
        return "open"

    def retry_in(self) -> float:
        """Seconds until an attempt would be admitted (0 when it would be now)."""
        ends = [end for end in (self.open_until, self.quota_until) if end is not None]
        return max(0.0, max(ends) - self.clock()) if ends else 0.0

    def failure_ratio(self) -> float | None:
        """The share of counted failures in the window; None while it holds fewer than `min_calls` outcomes."""
        self._expire(self.clock())
        return self.failures / len(self.outcomes) if len(self.outcomes) >= self.min_calls else None

    def would_admit(self) -> bool:
        state = self.state
        return state == "closed" or (state == "half_open" and not self.probe_in_flight)

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
        self.consecutive_failures = 0
        if ticket.probe:
            self.probe_in_flight = False
            self.open_until = None
            self.cooldown = self.base_cooldown
            self._reset_window()
        elif self.open_until is None:
            self._record(False)

    def record_failure(self, ticket: Ticket | None) -> None:
        """A counted failure; `ticket` None for a failure found after the attempt was settled (mid-stream)."""
        self.consecutive_failures += 1
        if ticket is not None and ticket.probe:
            self.probe_in_flight = False
            self.cooldown = min(self.cooldown * 2, self.cooldown_max)
            self._open(self.cooldown)
        elif self.open_until is None:
            self._record(True)
            ratio = self.failure_ratio()
            if ratio is not None and ratio >= self.failure_rate:
                self._open(self.cooldown)

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without saying anything about the backend (cancelled, or a client error)."""
        if ticket.probe:
            self.probe_in_flight = False

    def trip(self, ticket: Ticket | None, cooldown: float) -> None:
        """Refuse every attempt for `cooldown` seconds from now (an exhausted quota), whatever the state; only a
        longer trip extends it, and nothing shortens it."""
        if ticket is not None and ticket.probe:
            self.probe_in_flight = False
        until = self.clock() + cooldown
        if self.state != "open":
            self.times_opened += 1
        self.quota_until = max(until, self.quota_until or until)

    def _record(self, failed: bool) -> None:
        now = self.clock()
        self.outcomes.append((now, failed))
        self.failures += failed
        self._expire(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        outcomes = self.outcomes
        while outcomes and outcomes[0][0] < horizon:
            self.failures -= outcomes.popleft()[1]

    def _reset_window(self) -> None:
        self.outcomes.clear()
        self.failures = 0

    def _open(self, cooldown: float) -> None:
        self.times_opened += 1
        self.open_until = self.clock() + cooldown
        self._reset_window()
