"""Client-side rate limits per backend: requests and tokens per sliding window, and Retry-After pauses, kept in a
`StateStore` (`llm.fleet.store`), so one Redis URL makes them the fleet's. The manager acquires a `Permit` before each
attempt (`llm.call.chain`) and settles or releases it after. Behaviour and settings: README.md, "Running a fleet".
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm.base import LLMRequest
from llm.core.bounds import checked_seconds
from llm.core.names import canonical_backend
from llm.errors import LLMLocalRateLimitError, sane_retry_after
from llm.fleet.store import TOO_LARGE, Admission, Entry, LocalStore, StateStore

__all__ = [
    "LLMLocalRateLimitError",
    "LimiterStatus",
    "Permit",
    "RateLimit",
    "RateLimiter",
    "estimate_tokens",
    "open_state_store",
    "sanitize_pause",
]

logger = logging.getLogger("llm.fleet.limiter")


def open_state_store(url: str | None, **options: Any) -> StateStore:
    """The store for a configured `SCOUT_LLM_REDIS_URL`: a `RedisStore` for a URL, else a `LocalStore`.

    `options` go to `RedisStore` (prefix, timeout, reconnect_interval).
    """
    if not url:
        return LocalStore()
    from llm.fleet.redis_store import RedisStore

    return RedisStore(url, **options)

#: A non-text message part (an image, audio) counts this many tokens in the estimate: a rough middle of what vendors
#: charge for one image (OpenAI: 85 to about 1,100 tokens by size; Anthropic: about width*height/750).
NON_TEXT_PART_TOKENS = 1000
#: The longest pause a Retry-After may impose (longer ones are capped: a quota error opens the breaker instead).
DEFAULT_MAX_PAUSE = 300.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One backend's limits. `rpm` requests and `tpm` tokens per `window` seconds; None: no such limit."""

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
            if value == 0:
                object.__setattr__(self, name, None)
        checked_seconds("window", self.window)


_NO_LIMIT = RateLimit()


@dataclass(frozen=True, slots=True)
class LimiterStatus:
    """A backend's limiter state for health and status output.

    Attributes:
        requests_left / tokens_left: capacity left in the current window; None when that limit is not set.
        paused_until: wall-clock time (epoch seconds) a Retry-After pause lasts until; None when not paused.
        shared: whether the state came from the shared store (False: this process only, or Redis is down).
        as_of: wall-clock time of the reading.
    """

    backend: str
    rpm: int | None
    tpm: int | None
    requests_left: int | None
    tokens_left: int | None
    paused_until: float | None
    shared: bool
    as_of: float


class Permit:
    """One admission. `settle` corrects its tokens by the reported usage; `release` gives them back on failure.

    Only the first of `settle` / `release` has an effect.
    """

    __slots__ = ("_done", "_entry", "_store", "_window", "backend", "shared", "tokens", "waited")

    def __init__(self, store: StateStore, window: float, backend: str, entry: Entry | None, waited: float,
                 shared: bool) -> None:
        self._store = store
        self._window = window
        self._entry = entry
        self._done = entry is None
        self.backend = backend
        self.tokens = entry.tokens if entry is not None else 0
        self.waited = waited
        self.shared = shared

    async def settle(self, actual_tokens: int | None) -> None:
        """Replace the estimate by the tokens the vendor reported; None or a nonsense value keeps the estimate."""
        if self._done or not _is_count(actual_tokens) or actual_tokens == self.tokens:
            self._done = True
            return
        await self._adjust(actual_tokens)

    async def release(self, *, sent: bool = True) -> None:
        """The attempt failed: its tokens go back; with `sent=False` (nothing reached the vendor) the request too."""
        if not self._done:
            await self._adjust(0 if sent else None)

    async def _adjust(self, tokens: int | None) -> None:
        self._done = True
        assert self._entry is not None
        if isinstance(self._store, LocalStore):
            self._store.adjust_now(self.backend, self._entry, tokens)
        else:
            await self._store.adjust(self.backend, self._entry, tokens, self._window)


class RateLimiter:
    """Admission control per backend, over a `StateStore` (in-process by default).

    Args:
        limits: backend name -> `RateLimit` (names are case-insensitive); a backend not listed has no limit but still
            honours pauses.
        store: where windows and pauses live: `LocalStore()` (this process) or a `RedisStore` (the fleet).
        max_pause: cap on one `pause`.
        clock / sleep: monotonic seconds and the sleep used while waiting (tests pass fakes).
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit] | None = None,
        *,
        store: StateStore | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.store: StateStore = store if store is not None else LocalStore(clock=clock)
        self._local = self.store if isinstance(self.store, LocalStore) else None
        self.max_pause = max_pause
        self._limits = {canonical_backend(name): limit for name, limit in (limits or {}).items()}
        self._clock = clock
        self._sleep = sleep
        # backend -> (requests left, tokens left, pause left, shared, wall time): the last reading, for `snapshot`
        self._last: dict[str, tuple[int | None, int | None, float, bool, float]] = {}

    @property
    def shared(self) -> bool:
        """Whether state is currently shared with other processes."""
        return self.store.shared

    def limit(self, backend: str) -> RateLimit:
        return self._limits.get(canonical_backend(backend), _NO_LIMIT)

    def set_limit(self, backend: str, limit: RateLimit | None) -> None:
        """Set (or with None remove) a backend's limits."""
        name = canonical_backend(backend)
        if limit is None:
            self._limits.pop(name, None)
        else:
            self._limits[name] = limit

    async def acquire(self, backend: str, est_tokens: int, deadline_remaining: float) -> Permit:
        """Wait for room for one request of `est_tokens` tokens, at most `deadline_remaining` seconds.

        Raises:
            LLMLocalRateLimitError: the wait would pass the deadline (raised at once, without waiting in vain); or
                `est_tokens` is above the whole TPM, so that it can never fit (raised at once, naming both).
        """
        name = canonical_backend(backend)
        limit = self._limits.get(name, _NO_LIMIT)
        tokens = est_tokens if _is_count(est_tokens) else 0
        budget = deadline_remaining if deadline_remaining >= 0 else 0.0  # NaN compares False: no budget
        start = self._clock()
        while True:
            if self._local is not None:  # in-process: no coroutine, the cheapest path
                admission = self._local.admit_now(name, limit.rpm or 0, limit.tpm or 0, tokens, limit.window)
            else:
                admission = await self.store.admit(name, limit.rpm or 0, limit.tpm or 0, tokens, limit.window)
            if admission.reason == TOO_LARGE:
                raise _too_large(name, limit, tokens)
            self._last[name] = (admission.requests_left, admission.tokens_left,
                                admission.wait if admission.reason == "paused" else 0.0, admission.shared, time.time())
            waited = self._clock() - start
            if admission.granted:
                return Permit(self.store, limit.window, name, admission.entry, waited, admission.shared)
            if admission.wait > budget - waited:
                raise _refusal(name, limit, admission, budget)
            await self._sleep(admission.wait + 0.001)

    async def pause(self, backend: str, seconds: Any) -> float:
        """Pause admissions to `backend` for `seconds` (a vendor's Retry-After), capped at `max_pause`.

        Returns the pause applied (0.0 when the number was refused: not a number, NaN, infinite, zero or negative).
        """
        value = sanitize_pause(seconds, self.max_pause)
        if value is None:
            logger.warning("ignoring a Retry-After of %r for %s: not a positive finite number", seconds, backend)
            return 0.0
        name = canonical_backend(backend)
        await self.store.pause(name, value)
        logger.info("%s: admissions paused for %.1fs (Retry-After)", name, value)
        return value

    async def status(self, backend: str) -> LimiterStatus:
        """The backend's limiter state, read now from the store."""
        name = canonical_backend(backend)
        limit = self.limit(name)
        usage = await self.store.usage(name, limit.window)
        requests_left = max(0, limit.rpm - usage.requests) if limit.rpm else None
        tokens_left = max(0, limit.tpm - usage.tokens) if limit.tpm else None
        self._last[name] = (requests_left, tokens_left, usage.paused_for, usage.shared, time.time())
        return self._status(name, *self._last[name])

    def snapshot(self, backend: str) -> LimiterStatus | None:
        """The last state seen by `acquire` or `status` (no I/O: for synchronous health output); None if none yet."""
        name = canonical_backend(backend)
        last = self._last.get(name)
        return None if last is None else self._status(name, *last)

    async def aclose(self) -> None:
        await self.store.aclose()

    def _status(self, name: str, requests_left: int | None, tokens_left: int | None, paused_for: float,
                shared: bool, as_of: float) -> LimiterStatus:
        limit = self.limit(name)
        return LimiterStatus(name, limit.rpm, limit.tpm, requests_left, tokens_left,
                             as_of + paused_for if paused_for > 0 else None, shared, as_of)


def _refusal(name: str, limit: RateLimit, admission: Admission, budget: float) -> LLMLocalRateLimitError:
    why = {"paused": "paused by a vendor Retry-After", "rpm": f"{limit.rpm} requests per {limit.window:g}s reached",
           "tpm": f"{limit.tpm} tokens per {limit.window:g}s reached"}.get(admission.reason, admission.reason)
    return LLMLocalRateLimitError(
        f"client-side rate limit: {why}; room in {admission.wait:.2f}s, after the call's deadline "
        f"({budget:.2f}s left); no request sent",
        backend=name, retry_after=admission.wait,
    )


def _too_large(name: str, limit: RateLimit, tokens: int) -> LLMLocalRateLimitError:
    return LLMLocalRateLimitError(
        f"client-side rate limit: the request is estimated at {tokens} tokens, above the whole limit of {limit.tpm} "
        f"tokens per {limit.window:g}s, so it can never be admitted; no request sent (lower max_tokens or the "
        "prompt, or raise the limit)",
        backend=name,
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sanitize_pause(seconds: Any, cap: float = DEFAULT_MAX_PAUSE) -> float | None:
    """A Retry-After (a number, or a header's text) as a pause in seconds, checked by `llm.errors.sane_retry_after`:
    None when it is refused or zero (no pause); capped at `cap`."""
    if isinstance(seconds, str):
        try:
            seconds = float(seconds)
        except ValueError:
            return None
    value = sane_retry_after(seconds)
    return min(value, cap) if value else None


def estimate_tokens(request: LLMRequest, default_max_tokens: int = 0) -> int:
    """What a request counts against TPM at admission: input tokens estimated as characters / 4, plus its output cap.

    Characters counted: the system prompt, each message's text (text parts of multi-part content), the JSON of tool
    calls and tool definitions; each non-text part (image, audio) counts `NON_TEXT_PART_TOKENS`. The output cap is
    `request.max_tokens`, else `default_max_tokens` (the backend's configured `max_tokens`). Four characters per token
    is the usual rule of thumb for English with OpenAI's and Anthropic's tokenizers; the estimate is corrected by the
    reported usage (`Permit.settle`).
    """
    chars, parts = len(request.system_prompt or ""), 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else part if isinstance(part, str) else None
                if isinstance(text, str):
                    chars += len(text)
                else:
                    parts += 1
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"], default=str))
    if request.tools:
        chars += len(json.dumps(request.tools, default=str))
    output = request.max_tokens if request.max_tokens is not None else default_max_tokens
    return math.ceil(chars / 4) + parts * NON_TEXT_PART_TOKENS + max(0, output)
