"""A backend's circuit breaker shared by a fleet: the in-process `CircuitBreaker` (llm._resilience) still decides for
this process, and its verdicts are mirrored into the fleet's `StateStore` (a `RedisStore` when `SCOUT_LLM_REDIS_URL`
is set), so a breaker opened by one process refuses calls in every other process with 0 requests sent.

    before an attempt   the local breaker admits, then the fleet's record is read: open -> refused (retry_after: what
                        is left of the open period); half-open -> only the process that claims the one probe goes
    after an attempt    (in the background: a call never waits for it) the outcome enters the fleet's failure window;
                        the window reaching `breaker_failure_rate` of `breaker_min_calls`, a local breaker opening or a
                        failed probe opens the fleet's breaker; a successful probe closes it; a quota error opens it
                        for the quota lockout (which no probe can lift before it ends: nobody may probe while open)

A record read while Redis is down is the store's in-process fallback (`shared` False): it is ignored, and the local
breaker alone decides until the store reconnects. Every store operation is bounded by the store's timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from llm._resilience import CircuitBreaker, Ticket, Verdict
from llm._shared_state import BreakerRecord, StateStore

__all__ = ["SharedBreaker"]

logger = logging.getLogger("llm.manager")

#: How long a process refused because another one holds the half-open probe is told to wait.
PROBE_WAIT = 1.0


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
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def shared(self) -> bool:
        return self.store.shared

    async def admit(self, ticket: Ticket) -> tuple[Ticket | None, float]:
        """Check a local ticket against the fleet's record: (the ticket to use, 0) or (None, seconds to wait)."""
        record = await self.store.breaker_state(self.name, self.breaker.window)
        self.last = record
        if not record.shared or record.state == "closed":
            return ticket, 0.0
        if record.state == "open":
            return None, record.open_for
        if await self.store.claim_probe(self.name, self.lease):
            return Ticket(probe=True), 0.0
        return None, PROBE_WAIT

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
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s: could not record the breaker outcome in the shared state: %r", self.name,
                           task.exception())

    async def drain(self) -> None:
        """Wait for the outcomes still being recorded (the manager's cleanup)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
