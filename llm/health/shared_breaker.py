"""A backend's circuit breaker shared by a fleet: this process's `CircuitBreaker` decides for the process, and each
attempt is checked against, and each outcome applied to, the breaker the fleet's `StateStore` keeps (a `RedisStore`
when `SCOUT_LLM_REDIS_URL` is set), whose state machine decides for the fleet. Behaviour: README.md, "Running a fleet".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from llm.fleet.store import BreakerRecord, StateStore
from llm.health.breaker import BreakerEvent, CircuitBreaker, Ticket, Verdict

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
        breaker: this process's breaker for the backend (its rules are the fleet breaker's rules).
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
        """Check a local ticket against the fleet's breaker: (the ticket to use, 0) or (None, seconds to wait).

        The fleet's record is read at most every `REFRESH` seconds (concurrent calls share one read); only when it
        is not closed does the attempt ask the store's breaker to admit it (which hands out the one half-open probe).
        A record from the store's in-process fallback (Redis down) is ignored: the local breaker alone decides.
        """
        record, age = await self._record()
        if not record.shared or record.state == "closed":
            return ticket, 0.0
        if record.state == "open" and record.open_for - age > 0:
            return None, record.open_for - age
        granted, record = await self._claim()
        self.last = record
        if not record.shared:
            return ticket, 0.0
        if granted is not None:
            return (granted if granted.probe else ticket), 0.0
        self._read_at = 0.0  # refused: read afresh next time
        return None, record.open_for or PROBE_WAIT

    async def _claim(self) -> tuple[Ticket | None, BreakerRecord]:
        """Ask the fleet's breaker to admit an attempt, in a task of its own: the caller's cancellation never enters
        the Redis client (on Python 3.11 `asyncio.wait_for`, which redis-py uses, loses a cancellation that arrives
        as the write completes), and a probe granted to a caller that left is given back."""
        claim = asyncio.get_running_loop().create_task(
            self.store.breaker_admit(self.name, self.breaker.rules, self.lease))
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(self._unclaim)
            raise

    def _unclaim(self, claim: asyncio.Task[tuple[Ticket | None, BreakerRecord]]) -> None:
        if not claim.cancelled() and claim.exception() is None:
            granted, _ = claim.result()
            if granted is not None and granted.probe:
                self._spawn(self._apply("release", True, 0.0))

    async def _record(self) -> tuple[BreakerRecord, float]:
        """The fleet's record and its age in seconds: read again when older than `REFRESH` (one read at a time)."""
        age = time.monotonic() - self._read_at
        if self.last is not None and age < REFRESH:
            return self.last, age
        loop = asyncio.get_running_loop()
        reading = self._reading
        if reading is None or reading.done() or reading.get_loop() is not loop:
            reading = self._reading = loop.create_task(self.store.breaker_state(self.name, self.breaker.rules))
        record = await asyncio.shield(reading)
        self.last, self._read_at = record, time.monotonic()
        return record, 0.0

    def outcome(self, ticket: Ticket | None, verdict: Verdict | None, lockout: float) -> None:
        """Apply one settled attempt (`verdict` None: a success; `lockout`: a quota trip's length) to the fleet's
        breaker, in the background: a call never waits for it, and outcomes are sent one at a time."""
        probe = ticket is not None and ticket.probe
        event: BreakerEvent
        if verdict is None:
            event = "success"
        elif verdict == "quota":
            event = "quota"
        elif verdict == "counted":
            event = "failure"
        elif probe:
            event = "release"
        else:
            return
        last = self.last
        if event == "success" and probe and last is not None and last.shared:
            # The fleet's breaker closes on our probe's success (`Circuit.succeed`): what this process reads of it
            # says so at once, not once the write in the background is done.
            self.last = dataclasses.replace(last, state="closed", open_for=0.0, probe_taken=False,
                                            consecutive_failures=0, successes=0, failures=0)
        self._spawn(self._apply(event, probe, lockout))

    async def _apply(self, event: BreakerEvent, probe: bool, seconds: float) -> None:
        before = self.last
        record = self.last = await self.store.breaker_event(self.name, self.breaker.rules, event, probe, seconds)
        if record.shared and record.state == "open" and (before is None or record.times_opened > before.times_opened):
            logger.warning("%s: circuit opened for the fleet for %.1fs", self.name, record.open_for)

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
