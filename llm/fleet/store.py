"""Where a fleet's per-backend state lives: the rate limiter's windows, Retry-After pauses and circuit-breaker records.

Two stores with one interface (`StateStore`); every duration crossing it is relative seconds (processes on different
machines share no clock):

* `LocalStore`: in-process state; what a single process uses, and every `RedisStore`'s fallback.
* `RedisStore` (`llm.fleet.redis_store`): the same state in a Redis-protocol server, shared by every process given the same
  URL and backend name; falls back to its `LocalStore` while Redis is down (see that module).

`open_state_store(SCOUT_LLM_REDIS_URL)` picks one. The limiter (`llm.fleet.limiter`) drives `admit`, `adjust`, `pause` and
`usage`. The manager's breaker (`llm.health.shared_breaker.SharedBreaker`) keeps its state in the breaker records, so a
breaker opened by one process is open in all:

    record = await store.breaker_state(name, window)          # before an attempt
    if record.state == "open": refuse, retry_after=record.open_for (0 requests sent)
    if record.state == "half_open" and not await store.claim_probe(name, lease=attempt_timeout): refuse
    record = await store.record_outcome(name, ok, window)     # after a counted outcome: the window's counts
    if a failure-rate / consecutive rule trips (or the probe failed): await store.open_breaker(name, cooldown)
    if the probe succeeded: await store.close_breaker(name)
    a quota error: await store.open_breaker(name, max(retry_after, quota_cooldown))
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from llm.fleet.redis_scripts import BUCKETS

__all__ = [
    "Admission",
    "BreakerRecord",
    "Entry",
    "LocalStore",
    "StateStore",
    "WindowUsage",
    "breaker_record",
]

BreakerState = Literal["closed", "open", "half_open"]


class Entry(NamedTuple):
    """One admission recorded in a backend's window, to be corrected later (`adjust`)."""

    id: str
    tokens: int
    shared: bool


class Admission(NamedTuple):
    """The answer to `admit` (a named tuple: it is made on every call).

    Attributes:
        granted: admitted now; else wait `wait` seconds before asking again.
        wait: seconds until capacity frees up (0 when granted).
        reason: why it was refused: "paused", "rpm" or "tpm" ("" when granted).
        entry: the recorded admission (None when granted with no limit configured, or refused).
        requests_left / tokens_left: capacity left in the window after this answer; None when not limited.
        shared: whether the answer came from the shared store.
    """

    granted: bool
    wait: float
    reason: str
    entry: Entry | None
    requests_left: int | None
    tokens_left: int | None
    shared: bool


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """What a backend's window holds now: admissions and tokens in the last `window` seconds, pause left."""

    requests: int
    tokens: int
    paused_for: float
    shared: bool


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A backend's breaker state as the fleet sees it.

    Attributes:
        state: "closed"; "open" until `open_for` elapses; then "half_open" (a probe may go) until closed or reopened.
        open_for: seconds the open period still lasts (0 when closed or elapsed).
        probe_taken: a half-open probe is claimed by some process and its lease has not run out.
        successes / failures: outcomes recorded in the failure window (bucketed: window / `BUCKETS` granularity).
        consecutive_failures: failures since the last recorded success.
        times_opened: how often the breaker went from not-open to open (while the record lived).
        shared: whether the record came from the shared store.
    """

    state: BreakerState
    open_for: float
    probe_taken: bool
    successes: int
    failures: int
    consecutive_failures: int
    times_opened: int
    shared: bool


class StateStore(Protocol):
    """Per-backend state for the limiter and the circuit breaker; durations are seconds, relative to now."""

    @property
    def shared(self) -> bool:
        """Whether operations currently go to the shared engine."""
        ...

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        """Record one admission of `tokens` when the window has room (rpm/tpm 0: no such limit) and no pause runs."""
        ...

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        """Correct a recorded admission to `tokens`; None removes it (request and tokens) from the window.

        Called at most once per entry (a `Permit` settles or releases once); an entry already out of the window is
        left alone.
        """
        ...

    async def pause(self, backend: str, seconds: float) -> float:
        """Pause admissions for `seconds` (never shortens a longer pause); returns the pause now in force."""
        ...

    async def usage(self, backend: str, window: float) -> WindowUsage: ...

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord: ...

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        """Count one success or counted failure in the failure window; returns the record with the new counts."""
        ...

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        """Open (or keep open) for at least `seconds`; clears any probe claim."""
        ...

    async def claim_probe(self, backend: str, lease: float) -> bool:
        """Take the one half-open probe for `lease` seconds; False when not half-open or another process holds it."""
        ...

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        """Close: clear the open period, the probe claim and the failure window."""
        ...

    async def aclose(self) -> None: ...


# -- in-process -------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _LocalEntry:
    at: float
    id: str
    tokens: int


@dataclass(slots=True)
class _LocalWindow:
    entries: deque[_LocalEntry] = field(default_factory=deque)
    by_id: dict[str, _LocalEntry] = field(default_factory=dict)
    tokens: int = 0

    def expire(self, now: float, window: float) -> None:
        entries = self.entries
        while entries and entries[0].at <= now - window:
            gone = entries.popleft()
            self.tokens -= gone.tokens
            del self.by_id[gone.id]
        if not entries:
            self.tokens = 0


@dataclass(slots=True)
class _LocalBreaker:
    until: float = 0.0  # 0: closed
    probe_until: float = 0.0
    opened: int = 0
    consecutive: int = 0
    buckets: dict[tuple[bool, int], int] = field(default_factory=dict)


class LocalStore:
    """In-process state: one process's view (and a `RedisStore`'s fallback). Not thread-safe; one event loop.

    Args:
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[str, _LocalWindow] = {}
        self._pauses: dict[str, float] = {}
        self._breakers: dict[str, _LocalBreaker] = {}
        self._seq = 0

    @property
    def shared(self) -> bool:
        return False

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        return self.admit_now(backend, rpm, tpm, tokens, window)

    def admit_now(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        """`admit`, synchronously (the same algorithm as the Redis script `_ADMIT`)."""
        now = self.clock()
        paused = self._pauses.get(backend, 0.0) - now
        if paused > 0:
            return Admission(False, paused, "paused", None, None, None, False)
        if not rpm and not tpm:
            return Admission(True, 0.0, "", None, None, None, False)
        win = self._windows.get(backend)
        if win is None:
            win = self._windows[backend] = _LocalWindow()
        if win.entries and win.entries[0].at <= now - window:
            win.expire(now, window)
        count = len(win.entries)
        tokens = min(tokens, tpm) if tpm else tokens
        wait, reason = 0.0, ""
        if rpm and count >= rpm:
            wait, reason = win.entries[count - rpm].at + window - now, "rpm"
        if tpm and win.tokens + tokens > tpm:
            need, freed = win.tokens + tokens - tpm, 0
            for entry in win.entries:
                freed += entry.tokens
                if freed >= need:
                    if entry.at + window - now > wait:
                        wait, reason = entry.at + window - now, "tpm"
                    break
        if wait > 0:
            return Admission(False, wait, reason, None, _left(rpm, count), _left(tpm, win.tokens), False)
        self._seq += 1
        local = _LocalEntry(now, str(self._seq), tokens)
        win.entries.append(local)
        win.by_id[local.id] = local
        win.tokens += tokens
        return Admission(True, 0.0, "", Entry(local.id, tokens, False), _left(rpm, count + 1),
                         _left(tpm, win.tokens), False)

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        self.adjust_now(backend, entry, tokens)

    def adjust_now(self, backend: str, entry: Entry, tokens: int | None) -> None:
        """`adjust`, synchronously."""
        win = self._windows.get(backend)
        local = win.by_id.get(entry.id) if win is not None else None
        if win is None or local is None:
            return  # already outside the window
        win.tokens -= local.tokens
        if tokens is None:
            win.entries.remove(local)
            del win.by_id[local.id]
        else:
            local.tokens = tokens
            win.tokens += tokens

    async def pause(self, backend: str, seconds: float) -> float:
        now = self.clock()
        until = max(self._pauses.get(backend, 0.0), now + seconds)
        self._pauses[backend] = until
        return until - now

    async def usage(self, backend: str, window: float) -> WindowUsage:
        now = self.clock()
        win = self._windows.get(backend)
        if win is not None:
            win.expire(now, window)
        paused = max(0.0, self._pauses.get(backend, 0.0) - now)
        return WindowUsage(len(win.entries) if win else 0, win.tokens if win else 0, paused, False)

    # -- breaker records ------------------------------------------------------------------------------------------

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return self._record(backend, window)

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        key = (ok, math.floor(self.clock() / (window / BUCKETS)))
        breaker.buckets[key] = breaker.buckets.get(key, 0) + 1
        breaker.consecutive = 0 if ok else breaker.consecutive + 1
        return self._record(backend, window)

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        now = self.clock()
        if breaker.until <= now:
            breaker.opened += 1
        breaker.until = max(breaker.until, now + seconds)
        breaker.probe_until = 0.0
        return self._record(backend, window)

    async def claim_probe(self, backend: str, lease: float) -> bool:
        breaker = self._breakers.get(backend)
        now = self.clock()
        if breaker is None or not 0 < breaker.until <= now or breaker.probe_until > now:
            return False
        breaker.probe_until = now + lease
        return True

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        breaker.until = breaker.probe_until = 0.0
        breaker.consecutive = 0
        breaker.buckets.clear()
        return self._record(backend, window)

    def _record(self, backend: str, window: float) -> BreakerRecord:
        breaker = self._breakers.get(backend) or _LocalBreaker()
        now = self.clock()
        bucket = math.floor(now / (window / BUCKETS))
        for key in [key for key in breaker.buckets if key[1] <= bucket - BUCKETS]:
            del breaker.buckets[key]
        ok = sum(n for (success, _), n in breaker.buckets.items() if success)
        failed = sum(n for (success, _), n in breaker.buckets.items() if not success)
        return breaker_record(breaker.until and breaker.until - now, breaker.until == 0,
                               breaker.probe_until > now, ok, failed, breaker.consecutive, breaker.opened, False)

    async def aclose(self) -> None:
        return None


def _left(limit: int, used: int) -> int | None:
    return max(0, limit - used) if limit else None


def breaker_record(open_for: float, closed: bool, probe: bool, ok: int, failed: int, consecutive: int,
                    opened: int, shared: bool) -> BreakerRecord:
    state: BreakerState = "closed" if closed else "open" if open_for > 0 else "half_open"
    return BreakerRecord(state, max(0.0, open_for) if not closed else 0.0, probe, ok, failed, consecutive, opened,
                         shared)
