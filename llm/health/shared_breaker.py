"""A backend's circuit breaker shared by a fleet: the in-process `CircuitBreaker` (llm._resilience) still decides for
this process, and its verdicts are mirrored into the fleet's `StateStore` (a `RedisStore` when `SCOUT_LLM_REDIS_URL`
is set), so a breaker opened by one process refuses calls in every other process with 0 requests sent.

    before an attempt   the local breaker admits, then the fleet's record is read (at most every `REFRESH` seconds:
                        concurrent calls share one read): open -> refused (retry_after: what is left of the open
                        period); half-open -> only the process that claims the one probe goes
    after an attempt    (in the background, one outcome at a time: a call never waits for it, and a burst of calls
                        holds one Redis connection, not one each) the outcome enters the fleet's failure window;
                        the window reaching `breaker_failure_rate` of `breaker_min_calls`, a local breaker opening or a
                        failed probe opens the fleet's breaker; a successful probe closes it; a quota error opens it
                        for the quota lockout (which no probe can lift before it ends: nobody may probe while open)

A record read while Redis is down is the store's in-process fallback (`shared` False): it is ignored, and the local
breaker alone decides until the store reconnects. Every store operation is bounded by the store's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from llm.fleet.store import BreakerRecord, StateStore
from llm.health.breaker import CircuitBreaker, Ticket, Verdict

__all__ = ["SharedBreaker"]

logger = logging.getLogger("llm.manager")

#: How long a process refused because another one holds the half-open probe is told to wait.
PROBE_WAIT = 1.0
#: How old the fleet's breaker record may be before an attempt reads it again: a breaker opened by another process
#: stops this one's calls within this many seconds, and a busy process reads the record a few times a second at most.
REFRESH = 0.1


class SharedBreaker:
    """The fleet's side of one backend's breaker.

    Args:
        name: the backend name (the store's key).
        breaker: this process's breaker for the backend (its window, thresholds and current cooldown are used).
        store: the fleet's state.
        lease: how long a claimed half-open probe stays ours (the attempt timeout).
    """

    def __init__(self, name: str, breaker: CircuitBreaker, store: StateStore, lease: float) -> None:
        self.name = name
        self.breaker = breaker
        self.store = store
        self.lease = lease
        self.last: BreakerRecord | None = None
        self._read_at = 0.0
        self._reading: asyncio.Future[BreakerRecord] | None = None
        self._outcomes: deque[Coroutine[Any, Any, Any]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self.store.shared

    async def admit(self, ticket: Ticket) -> tuple[Ticket | None, float]:
        """Check a local ticket against the fleet's record: (the ticket to use, 0) or (None, seconds to wait)."""
        record, age = await self._record()
        if not record.shared or record.state == "closed":
            return ticket, 0.0
        if record.state == "open" and record.open_for - age > 0:
            return None, record.open_for - age
        if await self.store.claim_probe(self.name, self.lease):
            return Ticket(probe=True), 0.0
        self._read_at = 0.0  # the open period ended or another process probes: read afresh next time
        return None, PROBE_WAIT

    async def _record(self) -> tuple[BreakerRecord, float]:
        """The fleet's record and its age in seconds: read again when older than `REFRESH` (one read at a time)."""
        age = time.monotonic() - self._read_at
        if self.last is not None and age < REFRESH:
            return self.last, age
        loop = asyncio.get_running_loop()
        reading = self._reading
        if reading is None or reading.done() or reading.get_loop() is not loop:
            reading = self._reading = loop.create_task(self.store.breaker_state(self.name, self.breaker.window))
        record = await asyncio.shield(reading)
        self.last, self._read_at = record, time.monotonic()
        return record, 0.0

    def outcome(self, ticket: Ticket | None, verdict: Verdict | None, lockout: float, opened_before: int) -> None:
        """Mirror one settled attempt (`verdict` None: a success) into the store, in the background.

        `opened_before` is the local breaker's `times_opened` before it heard of this outcome.
        """
        probe = ticket is not None and ticket.probe
        if verdict is None:
            self._spawn(self.store.close_breaker(self.name, self.breaker.window) if probe else self._count(True, 0))
        elif verdict == "quota":
            self._spawn(self._open(lockout))
        elif verdict == "counted":
            if probe or self.breaker.times_opened > opened_before:
                self._spawn(self._open(self.breaker.cooldown))
            else:
                self._spawn(self._count(False, opened_before))

    async def _count(self, ok: bool, opened_before: int) -> None:
        record = await self.store.record_outcome(self.name, ok, self.breaker.window)
        self.last = record
        total = record.successes + record.failures
        if (not ok and record.shared and record.state == "closed" and total >= self.breaker.min_calls
                and record.failures / total >= self.breaker.failure_rate):
            await self._open(self.breaker.cooldown)

    async def _open(self, seconds: float) -> None:
        self.last = await self.store.open_breaker(self.name, seconds, self.breaker.window)
        if self.last.shared:
            logger.warning("%s: circuit opened for the fleet for %.1fs", self.name, seconds)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        self._outcomes.append(work)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._record_outcomes())
            self._flusher.add_done_callback(self._done)

    async def _record_outcomes(self) -> None:
        while self._outcomes:
            work = self._outcomes.popleft()
            try:
                await work
            except Exception as exc:  # a store failure is the store's to report; an outcome is never worth a crash
                logger.warning("%s: could not record a breaker outcome in the shared state: %r", self.name, exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():  # the loop ended: what was not recorded is dropped
            while self._outcomes:
                self._outcomes.popleft().close()

    async def drain(self) -> None:
        """Wait for the outcomes still being recorded (the manager's cleanup)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done() and flusher.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(flusher, return_exceptions=True)
