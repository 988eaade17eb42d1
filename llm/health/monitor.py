"""`HealthMonitor`, the part of `LLMManager` that watches its backends: health snapshots, `check_health()` probes, the
background probe task, and binding to the running event loop (rebuilding what was bound to a loop that ended).

A base class of `LLMManager` (`llm.manager`), which owns the attributes declared here.
"""

from __future__ import annotations

import asyncio
import logging

from llm.base import LLMBackendType
from llm.core.names import canonical_backend
from llm.core.policy import ManagerPolicy
from llm.health.slot import BackendHealth, BackendSlot, describe_error, maybe_await, quiet_cleanup

__all__ = ["HealthMonitor"]

logger = logging.getLogger("llm.manager")


class HealthMonitor:
    """Health snapshots, probes and the event-loop binding of `LLMManager`; the state is the manager's."""

    policy: ManagerPolicy
    _slots: dict[str, BackendSlot]
    _loop: asyncio.AbstractEventLoop | None
    _loop_lock: asyncio.Lock | None
    _init_lock: asyncio.Lock | None
    _monitor: asyncio.Task[None] | None
    _rebind_needed: bool
    _released: bool
    _closing: bool

    def get_backend_health(self, backend_type: str | LLMBackendType) -> BackendHealth | None:
        """A snapshot of one backend's health, or None when it is not registered."""
        slot = self._slots.get(canonical_backend(backend_type))
        return slot.snapshot() if slot is not None else None

    def get_all_health_status(self) -> dict[str, BackendHealth]:
        """Snapshots (copies: changing them changes nothing) of every backend's health, by name."""
        return {name: slot.snapshot() for name, slot in self._slots.items()}

    def get_healthy_backends(self) -> list[str]:
        """Backends whose breaker is closed and whose last probe (if any) succeeded."""
        return [name for name, slot in self._slots.items() if slot.snapshot().is_healthy]

    async def check_health(self) -> dict[str, bool | None]:
        """Probe every backend now with its `health_check()`; None for a backend whose probe is already running."""
        await self._ensure_loop()
        return await self._probe_all()

    async def _probe_all(self) -> dict[str, bool | None]:
        slots = list(self._slots.values())
        results = await asyncio.gather(*(slot.probe(self.policy.health_check_timeout) for slot in slots))
        return {slot.name: result for slot, result in zip(slots, results, strict=True)}

    async def _ensure_loop(self) -> None:
        """Bind to the running loop; after a loop change, rebuild what was bound to the old one (defect 15)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind_needed = self._rebind_needed or self._loop is not None
            self._loop, self._loop_lock, self._init_lock = loop, asyncio.Lock(), asyncio.Lock()
        if self._rebind_needed:
            assert self._loop_lock is not None
            async with self._loop_lock:
                if self._rebind_needed:
                    await self._rebind_backends()
        self._start_monitor()

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

    def _start_monitor(self) -> None:
        if self._closing or (self._monitor is not None and not self._monitor.done()):
            return
        self._monitor = asyncio.get_running_loop().create_task(self._watch(), name="llm-manager-health")

    async def _watch(self) -> None:
        """Background health probes, one round at a time. When the loop shuts down and cancels this task (the end
        of `asyncio.run`), it closes the SDK clients bound to that loop so that none leaks."""
        try:
            while True:
                interval = self.policy.health_check_interval
                if not interval:
                    await asyncio.get_running_loop().create_future()  # no probes: wait for cancellation
                await asyncio.sleep(interval or 0)
                try:
                    await self._probe_all()
                except Exception:  # never let a probe round end the monitor
                    logger.exception("health check round failed")
        except asyncio.CancelledError:
            if not self._closing:
                for slot in list(self._slots.values()):
                    await quiet_cleanup(slot.backend)
                self._released = self._rebind_needed = True
            raise

    async def _stop_monitor(self) -> None:
        task, self._monitor = self._monitor, None
        if task is None or task.done():
            return
        if task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait({task})
