"""Where a fleet's per-backend state lives: the rate limiter's windows, Retry-After pauses and circuit breakers.

`StateStore` is the interface (every duration crossing it is relative seconds: processes on different machines share
no clock); `LocalStore` is one process's state and every `RedisStore`'s fallback (`llm.fleet.redis_store`).
`open_state_store` (`llm.fleet.limiter`) picks one. Behaviour: README.md, "Running a fleet"; layers: ARCHITECTURE.md.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from llm.health.breaker import BreakerEvent, BreakerRules, BreakerState, Circuit, Ticket

__all__ = [
    "TOO_LARGE",
    "Admission",
    "BreakerRecord",
    "Entry",
    "LocalStore",
    "StateStore",
    "WindowUsage",
]


class Entry(NamedTuple):
    """One admission recorded in a backend's window, to be corrected later (`adjust`)."""

    id: str
    tokens: int
    shared: bool


#: `Admission.reason` of a request estimated above the whole TPM (the local store and the Redis script alike).
TOO_LARGE = "too_large"


class Admission(NamedTuple):
    """The answer to `admit` (a named tuple: it is made on every call).

    Attributes:
        granted: admitted now; else wait `wait` seconds before asking again.
        wait: seconds until capacity frees up (0 when granted).
        reason: why it was refused: "paused", "rpm" or "tpm" ("" when granted); `TOO_LARGE` when the request
            alone is estimated above the whole TPM: it never fits, so it is refused for good (`wait` 0: waiting does
            not help).
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
    """A backend's breaker as the store sees it (the `Circuit` it keeps, read at one moment).

    Attributes:
        state: "closed", "open" (refusing) or "half_open" (a probe may go, or is out).
        open_for: seconds until the open period and any quota lockout end (0 when both have).
        probe_taken: a half-open probe is out and its lease has not run out.
        successes / failures: outcomes in the failure window.
        consecutive_failures: counted failures since the last success.
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

    async def breaker_state(self, backend: str, rules: BreakerRules) -> BreakerRecord: ...

    async def breaker_admit(self, backend: str, rules: BreakerRules,
                            lease: float) -> tuple[Ticket | None, BreakerRecord]:
        """`Circuit.admit`: a ticket (a probe is out for `lease` seconds) or None, and the record after it."""
        ...

    async def breaker_event(self, backend: str, rules: BreakerRules, event: BreakerEvent, probe: bool,
                            seconds: float = 0.0) -> BreakerRecord:
        """`Circuit.apply`: one settled attempt (`seconds`: a quota trip's length); returns the record after it."""
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


class LocalStore:
    """In-process state: one process's view (and a `RedisStore`'s fallback). Not thread-safe; one event loop.

    Args:
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[str, _LocalWindow] = {}
        self._pauses: dict[str, float] = {}
        self._breakers: dict[str, Circuit] = {}
        self._seq = 0

    @property
    def shared(self) -> bool:
        return False

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        return self.admit_now(backend, rpm, tpm, tokens, window)

    def admit_now(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        """`admit`, synchronously (the same algorithm as the Redis script `_ADMIT`)."""
        if tokens > tpm > 0:  # it can never fit: refused before any wait
            return Admission(False, 0.0, TOO_LARGE, None, None, None, False)
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

    async def breaker_state(self, backend: str, rules: BreakerRules) -> BreakerRecord:
        circuit = self._breakers.get(backend) or Circuit(rules.cooldown)
        return _record(circuit, rules, self.clock())

    async def breaker_admit(self, backend: str, rules: BreakerRules,
                            lease: float) -> tuple[Ticket | None, BreakerRecord]:
        now = self.clock()
        circuit = self._circuit(backend, rules)
        return circuit.admit(now, lease), _record(circuit, rules, now)

    async def breaker_event(self, backend: str, rules: BreakerRules, event: BreakerEvent, probe: bool,
                            seconds: float = 0.0) -> BreakerRecord:
        now = self.clock()
        circuit = self._circuit(backend, rules)
        circuit.apply(event, probe, rules, now, seconds)
        return _record(circuit, rules, now)

    def _circuit(self, backend: str, rules: BreakerRules) -> Circuit:
        circuit = self._breakers.get(backend)
        if circuit is None:
            circuit = self._breakers[backend] = Circuit(rules.cooldown)
        return circuit

    async def aclose(self) -> None:
        return None


def _left(limit: int, used: int) -> int | None:
    return max(0, limit - used) if limit else None


def _record(circuit: Circuit, rules: BreakerRules, now: float) -> BreakerRecord:
    ok, failed = circuit.counts(rules, now)
    return BreakerRecord(circuit.state(now), circuit.retry_in(now), circuit.probe_until > now, ok, failed,
                         circuit.consecutive, circuit.times_opened, False)
