"""`ManagerPolicy`: the manager's reliability settings (retries, deadlines, breaker, limits), checked when built.
README.md ("Call", "Health") says what each one does to a call."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm.core.bounds import checked_int, checked_seconds
from llm.core.names import canonical_backend
from llm.core.secrets import SecretURL
from llm.errors import LLMConfigError

__all__ = ["POSITIVE_SECONDS", "ManagerPolicy"]


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
        stream_timeout: longest a stream may run, from the call's start to its last event (the call's `timeout` bounds
            only the wait for its first event); None: `SCOUT_LLM_STREAM_TIMEOUT` (unset: no limit).
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
            Held as a `SecretURL`: its password never shows in a repr.
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
    stream_timeout: float | None = None
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

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ManagerPolicy:
        """The policy of `LLMManager(**options)`.

        Raises:
            LLMConfigError: an option the policy does not have (one of earlier releases), naming the ones it has.
            ValueError: a value out of its range.
        """
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise LLMConfigError(f"LLMManager has no option {', '.join(map(repr, unknown))}; its options are the "
                                 f"fields of ManagerPolicy: {', '.join(known)}")
        return cls(**options)

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
        if self.redis_url is not None:
            if not (isinstance(self.redis_url, str) and self.redis_url.startswith(("redis://", "rediss://"))):
                raise ValueError("redis_url must be a redis:// or rediss:// URL")
            object.__setattr__(self, "redis_url", SecretURL(self.redis_url))
        if self.fallback_order is not None:
            object.__setattr__(self, "fallback_order", tuple(map(canonical_backend, self.fallback_order)))


    def _check_numbers(self) -> None:
        """Durations are seconds (> 0, or >= 0 where zero means "none"; None where it means "from the
        configuration"), counts integers >= 1."""
        for name in POSITIVE_SECONDS:
            checked_seconds(name, getattr(self, name), allow_none=name in _OPTIONAL)
        for name in ("retry_delay", "min_attempt_time", "health_check_interval"):
            checked_seconds(name, getattr(self, name), allow_zero=True, allow_none=name in _OPTIONAL)
        for name in ("retry_attempts", "breaker_min_calls", "max_concurrency"):
            if getattr(self, name) is not None:
                checked_int(name, getattr(self, name), 1)


#: ManagerPolicy fields that are durations which must be > 0 (None, where allowed, means "from the configuration").
POSITIVE_SECONDS = ("timeout", "attempt_timeout", "first_chunk_timeout", "backoff_max", "retry_after_max",
                    "idle_timeout", "stream_timeout", "breaker_window", "breaker_cooldown", "breaker_cooldown_max",
                    "quota_cooldown", "quota_cooldown_max", "health_check_timeout")
#: The duration fields where None means "from the configuration" (or, for the interval, no background probes).
_OPTIONAL = frozenset({"timeout", "attempt_timeout", "first_chunk_timeout", "stream_timeout", "retry_delay",
                       "health_check_interval"})


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
