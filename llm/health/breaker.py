"""`CircuitBreaker`: a backend's failure-rate breaker, and `breaker_verdict`, which failures count against it.

    counted    backend-side failures only: 5xx, 529, timeouts, connection errors, 429, mid-stream failures, and an
               `OSError` from a custom backend; quota trips it at once (capped). Never counted: invalid requests (ours
               or the vendor's 4xx verdict), auth errors, a custom backend's other exceptions, cancellation
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from llm.errors import (
    LLMCircuitOpenError,
    LLMConnectionError,
    LLMError,
    LLMLocalRateLimitError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
)

__all__ = ["BREAKER_COUNTED", "BreakerState", "CircuitBreaker", "Ticket", "Verdict", "breaker_verdict"]

BreakerState = Literal["closed", "open", "half_open"]
Verdict = Literal["counted", "quota", "ignored"]

#: Errors that say the backend (not the request) is failing.
BREAKER_COUNTED: tuple[type[Exception], ...] = (
    LLMServerError, LLMTimeoutError, LLMConnectionError, LLMStreamError, LLMRateLimitError,
)


def breaker_verdict(exc: BaseException) -> Verdict:
    """How a failed attempt weighs on the backend's circuit breaker."""
    if isinstance(exc, LLMQuotaExceededError):
        return "quota"
    if isinstance(exc, LLMCircuitOpenError | LLMLocalRateLimitError):  # no request was sent
        return "ignored"
    if isinstance(exc, BREAKER_COUNTED) or (isinstance(exc, OSError) and not isinstance(exc, LLMError)):
        return "counted"
    return "ignored"


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
