"""A backend's circuit breaker: which failures count against it (`breaker_verdict`), the state machine every breaker
follows (`Circuit`), and this process's breaker on the monotonic clock (`CircuitBreaker`). The fleet's stores keep a
`Circuit` per backend (`llm.fleet.store`); the Lua breaker of `llm.fleet.redis_scripts` is its Redis form. Behaviour:
README.md, "Health" and "Running a fleet".
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from llm.errors import (
    LLMCircuitOpenError,
    LLMConnectionError,
    LLMDeadlineExceededError,
    LLMError,
    LLMLocalRateLimitError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
)

__all__ = [
    "BREAKER_COUNTED",
    "BUCKETS",
    "BreakerEvent",
    "BreakerRules",
    "BreakerState",
    "Circuit",
    "CircuitBreaker",
    "Ticket",
    "Verdict",
    "breaker_verdict",
    "callers_own",
]

BreakerState = Literal["closed", "open", "half_open"]
Verdict = Literal["counted", "quota", "ignored"]
#: What a settled attempt tells a breaker: it succeeded, it failed (counted), the quota is exhausted, or nothing
#: (`release`: cancelled, or a client error).
BreakerEvent = Literal["success", "failure", "quota", "release"]

#: Buckets the failure window is counted in (a rolling window, as Hystrix's): an outcome leaves the window at most
#: window / BUCKETS before its age reaches the window.
BUCKETS = 10

#: Errors that say the backend (not the request) is failing.
BREAKER_COUNTED: tuple[type[Exception], ...] = (
    LLMServerError, LLMTimeoutError, LLMConnectionError, LLMStreamError, LLMRateLimitError,
)


def callers_own(exc: BaseException) -> bool:
    """Whether an attempt ended by the caller's own choice, which says nothing about the backend: its cancellation,
    or a cut by its deadline (the call's total deadline, a stream's `stream_timeout`), including a stream error
    caused by such a cut."""
    return isinstance(exc, asyncio.CancelledError | LLMDeadlineExceededError) or isinstance(
        exc.__cause__, LLMDeadlineExceededError)


def breaker_verdict(exc: BaseException) -> Verdict:
    """How a failed attempt weighs on the backend's circuit breaker.

    Counted: backend-side failures (5xx, 529, timeouts, connection errors, 429, mid-stream failures, an `OSError` from
    a custom backend); "quota" trips it at once. Ignored: invalid requests, auth errors, a custom backend's other
    exceptions, the refusals that sent no request, and what is the caller's own (`callers_own`).
    """
    if isinstance(exc, LLMQuotaExceededError):
        return "quota"
    if isinstance(exc, LLMCircuitOpenError | LLMLocalRateLimitError) or callers_own(exc):  # not the backend's
        return "ignored"
    if isinstance(exc, BREAKER_COUNTED) or (isinstance(exc, OSError) and not isinstance(exc, LLMError)):
        return "counted"
    return "ignored"


@dataclass(slots=True)
class Ticket:
    """Permission to send one attempt; `probe` marks the single attempt a half-open breaker lets through."""

    probe: bool = False


@dataclass(frozen=True, slots=True)
class BreakerRules:
    """A breaker's thresholds: the failure window (seconds), the outcomes it must hold before the breaker may open,
    the share of counted failures that opens it, the first open period and its cap (seconds)."""

    window: float
    min_calls: int
    failure_rate: float
    cooldown: float
    cooldown_max: float
    bucket: float = field(init=False)  # a bucket's width, seconds

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket", self.window / BUCKETS)


@dataclass(slots=True)
class Circuit:
    """The breaker's state and its transitions, on times the caller gives (seconds on one clock).

    Closed: outcomes enter the failure window; when it holds at least `min_calls` outcomes and the share of counted
    failures reaches `failure_rate`, the breaker opens for `cooldown`. Then it is half-open: one probe goes through
    (for `lease` seconds); success closes it with a fresh window, failure reopens it with the cooldown doubled (up to
    `cooldown_max`). Outcomes of attempts admitted before it opened do not move it. A quota trip refuses every attempt
    until its own end, and nothing lifts it sooner. `llm.fleet.redis_scripts` holds the same transitions in Lua.
    """

    cooldown: float  # the open period of the next opening
    open_until: float | None = None  # None while closed
    quota_until: float = 0.0  # a quota lockout, independent of the failure rate
    probe_until: float = 0.0  # a probe is out until then
    times_opened: int = 0
    consecutive: int = 0  # counted failures since the last success
    buckets: deque[list[int]] = field(default_factory=deque)  # [bucket, successes, failures], oldest first
    successes: int = 0  # in `buckets`
    failures: int = 0

    def state(self, now: float) -> BreakerState:
        if now < self.quota_until:
            return "open"
        if self.open_until is None:
            return "closed"
        if now < self.open_until and self.probe_until <= now:
            return "open"
        return "half_open"

    def retry_in(self, now: float) -> float:
        """Seconds until the open period and any quota lockout end (0 when both have), to the microsecond (a
        difference of two large clock readings carries float noise past it)."""
        return max(0.0, round(max(self.quota_until, self.open_until or 0.0) - now, 6))

    def counts(self, rules: BreakerRules, now: float) -> tuple[int, int]:
        """The successes and counted failures in the window."""
        self._expire(rules, now)
        return self.successes, self.failures

    def ratio(self, rules: BreakerRules, now: float) -> float | None:
        """The share of counted failures in the window; None while it holds fewer than `min_calls` outcomes."""
        ok, failed = self.counts(rules, now)
        return failed / (ok + failed) if ok + failed >= rules.min_calls else None

    def would_admit(self, now: float) -> bool:
        state = self.state(now)
        return state == "closed" or (state == "half_open" and self.probe_until <= now)

    def admit(self, now: float, lease: float) -> Ticket | None:
        """A ticket for one attempt, or None when the breaker refuses it; a probe is out for `lease` seconds."""
        if self.open_until is None and now >= self.quota_until:  # closed: `state`, for the common case
            return Ticket()
        if self.state(now) == "open" or self.probe_until > now:
            return None
        self.probe_until = now + lease
        return Ticket(probe=True)

    def succeed(self, probe: bool, rules: BreakerRules, now: float) -> None:
        self.consecutive = 0
        if probe:
            self.probe_until = 0.0
            self.open_until = None
            self.cooldown = rules.cooldown
            self._clear()
        elif self.open_until is None:
            self._count(False, rules, now)

    def fail(self, probe: bool, rules: BreakerRules, now: float) -> None:
        self.consecutive += 1
        if probe:
            self.probe_until = 0.0
            self.cooldown = min(self.cooldown * 2, rules.cooldown_max)
            self._open(now)
        elif self.open_until is None:
            self._count(True, rules, now)
            total = self.successes + self.failures
            if total >= rules.min_calls and self.failures / total >= rules.failure_rate:
                self._open(now)

    def release(self, probe: bool) -> None:
        if probe:
            self.probe_until = 0.0

    def trip(self, probe: bool, seconds: float, now: float) -> None:
        """Refuse every attempt for `seconds` from now, whatever the state; only a longer trip extends it."""
        if probe:
            self.probe_until = 0.0
        if self.state(now) != "open":
            self.times_opened += 1
        self.quota_until = max(self.quota_until, now + seconds)

    def apply(self, event: BreakerEvent, probe: bool, rules: BreakerRules, now: float, seconds: float = 0.0) -> None:
        """One settled attempt (`seconds`: a quota trip's length)."""
        if event == "success":
            self.succeed(probe, rules, now)
        elif event == "failure":
            self.fail(probe, rules, now)
        elif event == "quota":
            self.trip(probe, seconds, now)
        else:
            self.release(probe)

    def _open(self, now: float) -> None:
        self.times_opened += 1
        self.open_until = now + self.cooldown
        self._clear()

    def _count(self, failed: bool, rules: BreakerRules, now: float) -> None:
        bucket = self._expire(rules, now)
        buckets = self.buckets
        last = buckets[-1] if buckets else None
        if last is None or last[0] != bucket:
            last = [bucket, 0, 0]
            buckets.append(last)
        if failed:
            last[2] += 1
            self.failures += 1
        else:
            last[1] += 1
            self.successes += 1

    def _expire(self, rules: BreakerRules, now: float) -> int:
        """Drop the buckets that left the window; returns the current bucket."""
        bucket = math.floor(now / rules.bucket)
        buckets = self.buckets
        while buckets and buckets[0][0] <= bucket - BUCKETS:
            _, ok, failed = buckets.popleft()
            self.successes -= ok
            self.failures -= failed
        return bucket

    def _clear(self) -> None:
        self.buckets.clear()
        self.successes = self.failures = 0


class CircuitBreaker:
    """This process's breaker for one backend: a `Circuit` on the monotonic clock (the model of Envoy's outlier
    detection and resilience4j's `CircuitBreaker`). A probe it admits is out until its outcome is recorded."""

    __slots__ = ("circuit", "clock", "rules")

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
        self.rules = BreakerRules(window, min_calls, failure_rate, cooldown, max(cooldown, cooldown_max))
        self.clock = clock
        self.circuit = Circuit(cooldown)

    @property
    def state(self) -> BreakerState:
        return self.circuit.state(self.clock())

    @property
    def times_opened(self) -> int:
        return self.circuit.times_opened

    @property
    def probe_in_flight(self) -> bool:
        """Whether the half-open probe's one ticket is out (every other attempt is refused until it comes back)."""
        return self.circuit.probe_until > self.clock()

    @property
    def consecutive_failures(self) -> int:
        return self.circuit.consecutive

    def retry_in(self) -> float:
        """Seconds until an attempt would be admitted (0 when it would be now)."""
        return self.circuit.retry_in(self.clock())

    def failure_ratio(self) -> float | None:
        """The share of counted failures in the window; None while it holds fewer than `min_calls` outcomes."""
        return self.circuit.ratio(self.rules, self.clock())

    def would_admit(self) -> bool:
        return self.circuit.would_admit(self.clock())

    def admit(self) -> Ticket | None:
        """A ticket for one attempt, or None when the breaker refuses it."""
        return self.circuit.admit(self.clock(), math.inf)

    def record_success(self, ticket: Ticket) -> None:
        self.circuit.succeed(ticket.probe, self.rules, self.clock())

    def record_failure(self, ticket: Ticket | None) -> None:
        """A counted failure; `ticket` None for a failure found after the attempt was settled (mid-stream)."""
        self.circuit.fail(ticket is not None and ticket.probe, self.rules, self.clock())

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without saying anything about the backend (cancelled, or a client error)."""
        self.circuit.release(ticket.probe)

    def trip(self, ticket: Ticket | None, cooldown: float) -> None:
        """Refuse every attempt for `cooldown` seconds from now (an exhausted quota); nothing shortens it."""
        self.circuit.trip(ticket is not None and ticket.probe, cooldown, self.clock())
