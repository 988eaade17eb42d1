"""`attach_limits`: a newly registered backend's client-side rate limit and, with a Redis URL, its fleet-shared
breaker. README.md ("Running a fleet") says what they do; `llm.fleet` holds the machinery.
"""

from __future__ import annotations

from llm.config import LLMSettings
from llm.core.policy import ManagerPolicy
from llm.errors import LLMConfigError
from llm.fleet.limiter import RateLimit, RateLimiter, open_state_store
from llm.health.shared_breaker import SharedBreaker
from llm.health.slot import BackendSlot

__all__ = ["attach_limits"]


def attach_limits(slot: BackendSlot, limiter: RateLimiter | None, policy: ManagerPolicy,
                  settings: LLMSettings) -> RateLimiter | None:
    """Give `slot` its limits and return the manager's limiter (`limiter`, or one built now when this is the first
    backend with a limit or shared state is configured; None when neither is).

    Limits: `ManagerPolicy.rate_limits[name]`, else `SCOUT_<BACKEND>_RPM/TPM` (`LLMConfig` keeps the contract's
    fields, so limits are not set there).

    Raises:
        LLMConfigError: a limit or the Redis settings do not fit.
    """
    rpm, tpm = (policy.rate_limits or {}).get(slot.name) or settings.rate_limit_for(slot.name)
    url = policy.redis_url or settings.redis_url
    try:
        if limiter is None and (rpm or tpm or url):
            store = open_state_store(url, prefix=settings.redis_prefix, timeout=settings.redis_timeout) if url else None
            limiter = RateLimiter(store=store)
        if limiter is None:
            return None
        limiter.set_limit(slot.name, RateLimit(rpm=rpm, tpm=tpm))
    except ValueError as exc:
        raise LLMConfigError(f"rate limits of {slot.name}: {exc}") from None
    slot.limiter = limiter
    if url:
        lease = policy.attempt_timeout or float(slot.backend.config.timeout)
        slot.shared = SharedBreaker(slot.name, slot.breaker, limiter.store, lease)
    return limiter
