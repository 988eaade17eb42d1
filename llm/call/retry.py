"""The retry rules of one call: which errors are retried (`is_retryable`) or end the call (`blocks_failover`), the
backoff before the next attempt, and the call's `Deadline`. README.md ("Routing and fallback") states the rules.
"""

from __future__ import annotations

import random
import time

from llm.errors import (
    LLMBackendError,
    LLMBadRequestError,
    LLMCircuitOpenError,
    LLMStructuredOutputError,
    LLMValidationError,
)

__all__ = ["NO_FAILOVER", "Deadline", "backoff_delay", "blocks_failover", "is_retryable", "retry_wait"]


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


def is_retryable(exc: BaseException) -> bool:
    """Whether the manager may send the same request to the same backend again."""
    return isinstance(exc, LLMBackendError) and exc.retryable and not isinstance(exc, LLMCircuitOpenError)


def blocks_failover(exc: BaseException, structured_failover: bool = False) -> bool:
    """Whether an error ends the whole call instead of moving on to the next backend (a schema failure does not when
    the policy's `structured_failover` asks for it)."""
    if structured_failover and isinstance(exc, LLMStructuredOutputError):
        return False
    return isinstance(exc, NO_FAILOVER)


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
