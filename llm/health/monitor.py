"""`HealthMonitor`: the manager's watch over its backends (health snapshots, probes, the background probe task) and
its binding to the running event loop.

`LLMManager` holds one and delegates to it; README.md ("Health") says what a caller sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from llm.backends.base import describe_error, quiet_cleanup
from llm.core.awaitables import maybe_await
from llm.core.policy import ManagerPolicy
from llm.errors import LLMError
from llm.health.slot import BackendHealth, BackendSlot

__all__ = ["HealthMonitor"]

logger = logging.getLogger("llm.manager")


class HealthMonitor:
    """Watches the slots of one manager: `slots` is the manager's own registry (read, never replaced), `policy`
    returns the manager's current policy."""

    def __init__(self, slots: dict[str, BackendSlot], policy: Callable[[], ManagerPolicy]) -> None:
        self._slots = slots
        self._policy = policy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock: asyncio.Lock | None = None
        self.init_lock: asyncio.Lock | None = None  # serialises `initialize_llm_backends` in the bound loop
        self._task: asyncio.Task[None] | None = None
        self._rebind_needed = False
        self._released = False
        self._closing = False

    # -- snapshots and probes ---------------------------------------------------------------------------------------

    def health(self, name: str) -> BackendHealth | None:
        slot = self._slots.get(name)
        return slot.snapshot() if slot is not None else None

    def all_health(self) -> dict[str, BackendHealth]:
        return {name: slot.snapshot() for name, slot in self._slots.items()}

    def healthy(self) -> list[str]:
        return [name for name, slot in self._slots.items() if slot.snapshot().is_healthy]

    async def check(self) -> dict[str, bool | None]:
        await self.bind()
        return await self._probe_all()

    async def _probe_all(self) -> dict[str, bool | None]:
        slots = list(self._slots.values())
        timeout = self._policy().health_check_timeout
        results = await asyncio.gather(*(slot.probe(timeout) for slot in slots))
        return {slot.name: result for slot, result in zip(slots, results, strict=True)}

    # -- the event loop ---------------------------------------------------------------------------------------------

    async def bind(self) -> None:
        """Bind to the running loop, the one owner of the manager's loop: after the loop it was bound to ended (closed,
        or no longer running: successive `asyncio.run` calls), rebuild what was bound to the old one, whose probe task
        is cancelled. Starts the background probe task when it is not running.

        Raises:
            LLMError: the loop it is bound to still runs (in another thread): its SDK clients and calls belong to it.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop and not self._rebind_needed and self._task is not None and not self._task.done():
            return  # every call passes here: the bound loop, its probe task running
        if loop is not self._loop:
            old = self._loop
            if old is not None and not old.is_closed() and old.is_running():
                raise LLMError("this LLMManager is bound to another event loop that is still running (the blocking "
                               "API's or another thread's): use one manager per event loop, or run the coroutine on "
                               "its loop (SyncClient.run)")
            self._forget_task()
            self._rebind_needed = self._rebind_needed or old is not None
            self._loop, self._loop_lock, self.init_lock = loop, asyncio.Lock(), asyncio.Lock()
        if self._rebind_needed:
            assert self._loop_lock is not None
            async with self._loop_lock:
                if self._rebind_needed:
                    await self._rebind_backends()
        self._start()

    async def _rebind_backends(self) -> None:
        for slot in list(self._slots.values()):
            if not self._released:  # the old loop ended without our task: close its clients as well as we can
                await quiet_cleanup(slot.backend)
            try:
                await maybe_await(slot.backend.initialize())
            except Exception as exc:
                logger.warning("Could not re-initialize %s in the new event loop: %s", slot.name,
                               describe_error(exc, slot.backend.config.secret()))
        self._rebind_needed = self._released = False

    def _forget_task(self) -> None:
        """Cancel the probe task of a loop that no longer runs (it unwinds if that loop ever runs again)."""
        task, self._task = self._task, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()

    def _start(self) -> None:
        if self._closing or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="llm-manager-health")

    async def _watch(self) -> None:
        """Background health probes, one round at a time. When the loop shuts down and cancels this task (the end
        of `asyncio.run`), it closes the SDK clients bound to that loop so that none leaks."""
        try:
            while True:
                interval = self._policy().health_check_interval
                if not interval:
                    await asyncio.get_running_loop().create_future()  # no probes: wait for cancellation
                await asyncio.sleep(interval or 0)
                try:
                    await self._probe_all()
                except Exception:  # never let a probe round end the monitor
                    logger.exception("health check round failed")
        except asyncio.CancelledError:
            if not self._closing and self._loop is asyncio.get_running_loop():  # not a task the manager moved on from
                for slot in list(self._slots.values()):
                    await quiet_cleanup(slot.backend)
                self._released = self._rebind_needed = True
            raise

    async def stop(self) -> None:
        """Stop the background task (when it runs in this loop)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait({task})

    @contextlib.asynccontextmanager
    async def closing(self) -> AsyncIterator[None]:
        """The manager's cleanup: the task stopped and not restarted inside the block; afterwards nothing is left
        to rebind (the backends are gone)."""
        self._closing = True
        try:
            await self.stop()
            yield
        finally:
            self._closing = self._rebind_needed = self._released = False
