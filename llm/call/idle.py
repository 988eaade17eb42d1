"""`IdleTimeout`: the bound on each wait for the next stream event, at the cost of a few attribute writes per event
(the stream relay, `llm.call.relay`, arms it once per event).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["IdleTimeout"]

#: A timer that fires this close to its deadline counts as expired (loop timers may fire a little early).
EARLY_TOLERANCE = 1e-3


class IdleTimeout:
    """A reusable timeout for successive waits of one task at a time.

    `asyncio.timeout()` around every `anext()` of a stream schedules and cancels one loop timer per event, which
    costs more than the rest of the relay of that event. An `IdleTimeout` keeps one timer for a whole stream: arming
    it for a wait only moves a deadline (a float), and when the timer fires early, because the deadline moved since
    it was set, it re-arms itself for the time left: about one timer per idle period, not one per event. An expired
    wait surfaces as `TimeoutError`, with the semantics of `asyncio.timeout` (a cancellation from outside stays a
    `CancelledError`).

        idle = IdleTimeout()
        try:
            with idle.arm(seconds):
                event = await anext(events)
        finally:
            idle.close()
    """

    __slots__ = ("_cancelling", "_deadline", "_expired", "_handle", "_handle_when", "_loop", "_task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = 0.0  # when `_handle` fires (kept here: cheaper than `handle.when()` on every wait)
        self._task: asyncio.Task[object] | None = None
        self._deadline = 0.0
        self._cancelling = 0
        self._expired = False

    def arm(self, seconds: float) -> IdleTimeout:
        """Bound the next wait (the `with` block that follows) to `seconds` from now."""
        self._deadline = self._loop.time() + seconds
        return self

    def __enter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("IdleTimeout must be used inside a task")
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        handle = self._handle
        if handle is None or self._handle_when > self._deadline:  # no timer yet, or one set for later than needed
            if handle is not None:
                handle.cancel()
            self._handle, self._handle_when = self._loop.call_at(self._deadline, self._fire), self._deadline

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if self._expired and task is not None:
            self._expired = False
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        task = self._task
        if task is None:  # between waits: the next wait arms a new timer
            return
        if self._deadline - self._loop.time() > EARLY_TOLERANCE:  # the deadline moved since this timer was set
            self._handle, self._handle_when = self._loop.call_at(self._deadline, self._fire), self._deadline
            return
        self._expired = True
        task.cancel()

    def close(self) -> None:
        """Cancel the timer (when the stream ends)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
