"""`RedisStore`: the `StateStore` of `llm.fleet.store` kept in a Redis-protocol server (Redis or Valkey), so every
process given the same URL and backend name shares rate-limit windows, Retry-After pauses and breaker records.

Each operation is one Lua script (`llm.fleet.redis_scripts`), run atomically in one round trip through redis-py's asyncio
client (the `redis` extra); one connection pool per store and event loop. Admissions and their corrections are group
committed: the calls that queue up while a batch is in flight go to the server together, in one script call. Keys are
`{prefix}:{<backend>}:<what>` (the braces are a Redis Cluster hash tag: one backend's keys share a slot) and all
expire. Needs Redis >= 5 (scripts that write after `TIME` need effects replication) or any Valkey.

Redis unreachable, failing or slower than `timeout` (connect included): the operation is served by the store's
`LocalStore` instead, with one WARNING for the outage; a background PING every `reconnect_interval` seconds (never on
a caller's path) switches back, with a WARNING saying so. No caller waits on Redis longer than `timeout` (twice that
for a batched call that queued behind a batch in flight) and no operation fails because Redis is down. While down,
each process enforces its share of each limit: the limit divided by the number of processes (stores) that used the
backend's shared window during the last window, so the fleet as a whole stays within the account's limits. State is
not merged across an outage: what was recorded locally stays local, and a restarted Redis starts empty.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from llm.errors import LLMConfigError
from llm.fleet.redis_scripts import BUCKETS, SCRIPTS
from llm.fleet.store import (
    Admission,
    BreakerRecord,
    Entry,
    LocalStore,
    WindowUsage,
    breaker_record,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore"]

logger = logging.getLogger("llm.shared_state")

T = TypeVar("T")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def _key_part(backend: str) -> str:
    """A backend name as it appears inside a key's hash tag (anything but [A-Za-z0-9_.-] percent-encoded)."""
    return _UNSAFE_KEY_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), backend)


def _redact(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class _Connection:
    """One client (and its one connection pool) bound to the event loop that made it, with the scripts registered.

    A keeper task closes the pool when that loop shuts down (`asyncio.run` cancels it on exit), so a store used
    across successive `asyncio.run()` calls leaks no socket.
    """

    def __init__(self, client: Redis, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.closed = False
        self.scripts: dict[str, AsyncScript] = {name: client.register_script(text) for name, text in SCRIPTS.items()}
        self.keeper = loop.create_task(self._close_at_loop_end(), name="scout-llm-redis-pool")

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.scripts[name](keys=keys, args=args)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.client.aclose()

    async def _close_at_loop_end(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.close()


class _Down(Exception):
    """The store went down while a call waited in a batch."""


class _Batches:
    """Group commit for one script: calls that arrive while a batch of the same backend is in flight are sent together
    as the next batch (one command, one reply), so many concurrent calls cost a few round trips, not one each. A call
    waits for at most the batch in flight and its own, each bounded by the store's `timeout`.
    """

    def __init__(self, store: RedisStore, script: str, head: list[Any],
                 orphan: Callable[[str, list[Any], Any], None] | None) -> None:
        self.store, self.script, self.head, self.orphan = store, script, head, orphan
        self._queues: dict[str, list[tuple[list[Any], asyncio.Future[Any]]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}

    async def run(self, backend: str, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queues.setdefault(backend, []).append((args, future))
        flusher = self._flushers.get(backend)
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._flushers[backend] = loop.create_task(self._flush(backend, keys))
        return await future

    async def drain(self) -> None:
        """Wait for the batches of the running loop in flight (and queued) to be sent."""
        loop = asyncio.get_running_loop()
        flushers = [task for task in self._flushers.values() if task.get_loop() is loop and not task.done()]
        await asyncio.gather(*flushers, return_exceptions=True)

    async def _flush(self, backend: str, keys: list[str]) -> None:
        try:
            while queue := self._queues.pop(backend, None):
                await self._send(backend, keys, queue)
        except asyncio.CancelledError:  # the loop is shutting down: nobody will send what is still queued
            for _, future in self._queues.pop(backend, []):
                future.cancel()
            raise

    async def _send(self, backend: str, keys: list[str], queue: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        args = [*self.head, *(arg for item, _ in queue for arg in item)]
        try:
            if self.store._down:
                raise _Down("shared state unavailable")
            async with asyncio.timeout(self.store.timeout):
                replies = await self.store._connection().run(self.script, keys, args)
        except asyncio.CancelledError:
            for _, future in queue:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in queue:
                if not future.done():
                    future.set_exception(exc)
            return
        replies = replies if isinstance(replies, list) else [replies] * len(queue)
        for (item, future), reply in zip(queue, replies, strict=True):
            if not future.done():
                future.set_result(reply)
            elif self.orphan is not None:
                self.orphan(backend, item, reply)


class RedisStore:
    """State shared through a Redis-protocol server, with a `LocalStore` fallback (see the module docstring).

    Args:
        url: `redis://` or `rediss://` (credentials and database number as redis-py's `from_url` reads them).
        prefix: the namespace of every key (one per deployment sharing a server).
        timeout: bound on each Redis operation, connect included; past it the call is served locally.
        reconnect_interval: seconds between background reconnection attempts while Redis is down.
        fallback: the in-process store used while Redis is down (a new `LocalStore` by default).

    Raises:
        LLMConfigError: another URL scheme, or redis-py is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "scout-llm",
        timeout: float = 0.1,
        reconnect_interval: float = 5.0,
        fallback: LocalStore | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss"):
            raise LLMConfigError(f"SCOUT_LLM_REDIS_URL must start with redis:// or rediss://, got {_redact(url)!r}")
        if not (timeout > 0 and math.isfinite(timeout)) or not (reconnect_interval > 0):
            raise LLMConfigError("the Redis timeout and reconnect interval must be positive numbers of seconds")
        try:
            import redis.asyncio  # noqa: F401  (checked here so a missing extra fails at start-up, not per call)
        except ImportError as exc:
            raise LLMConfigError("Shared state needs redis-py: pip install 'scout-llm[redis]'") from exc
        self.url = url
        self.where = _redact(url)
        self.prefix = prefix
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.local = fallback if fallback is not None else LocalStore()
        self._conn: _Connection | None = None
        self._down = False
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._fleet: dict[str, int] = {}
        self.member = uuid.uuid4().hex
        self._admits = _Batches(self, "admit", [self.member], self._orphan)
        self._adjusts = _Batches(self, "adjust", [], None)
        self._orphans: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        return not self._down

    def _keys(self, backend: str, *names: str) -> list[str]:
        base = f"{self.prefix}:{{{_key_part(backend)}}}"
        return [f"{base}:{name}" for name in names]

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.loop is not loop:
            # A new loop (successive asyncio.run calls) cannot use sockets of the old one: a new pool.
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), decode_responses=True,  # we retry by falling back, never by waiting
            )
            self._conn = _Connection(client, loop)
        return self._conn

    async def _shared(self, script: str, keys: list[str], args: list[Any],
                      local: Callable[[], Awaitable[T]], convert: Callable[[Any], T]) -> T:
        """Run `script` on Redis within `timeout`; on any Redis failure (or while down) run `local` instead."""

        async def run() -> Any:
            async with asyncio.timeout(self.timeout):
                return await self._connection().run(script, keys, args)

        return await self._either(run, local, convert)

    async def _either(self, run: Callable[[], Awaitable[Any]], local: Callable[[], Awaitable[T]],
                      convert: Callable[[Any], T]) -> T:
        if not self._down:
            try:
                return convert(await run())
            except (OSError, TimeoutError, _Down, _redis_error()) as exc:
                self._went_down(exc)
        self._maybe_reconnect()
        return await local()

    def _went_down(self, exc: BaseException) -> None:
        if not self._down and not isinstance(exc, _Down):
            self._down = True
            self._next_probe = time.monotonic() + self.reconnect_interval
            logger.warning(
                "shared state at %s unavailable (%s: %s); using in-process state, retrying every %gs",
                self.where, type(exc).__name__, exc, self.reconnect_interval,
            )

    def _maybe_reconnect(self) -> None:
        if self._down and self._probe is None and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.reconnect_interval
            self._probe = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            conn = self._connection()
            await conn.client.connection_pool.disconnect()  # sockets of the old server are dead
            async with asyncio.timeout(self.timeout):
                await conn.client.ping()
        except (OSError, TimeoutError, _redis_error()) as exc:
            logger.debug("shared state at %s still unavailable: %s", self.where, type(exc).__name__)
        else:
            self._down = False
            logger.warning("shared state at %s reachable again; using it", self.where)
        finally:
            self._probe = None

    # -- the limiter ----------------------------------------------------------------------------------------------

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        keys = self._keys(backend, "rl:log", "rl:tokens", "pause", "rl:seq", "members")
        tokens = min(tokens, tpm) if tpm else tokens

        async def local() -> Admission:
            # Down: this process takes its share of each limit, so the fleet as a whole stays within it.
            fleet = self._fleet.get(backend, 1)
            return self.local.admit_now(backend, _share(rpm, fleet), _share(tpm, fleet), tokens, window)

        def convert(reply: Any) -> Admission:
            self._fleet[backend] = max(1, int(reply[5]))
            return _admission(reply, tokens)

        args = [rpm, tpm, tokens, _ms(window)]
        return await self._either(lambda: self._admits.run(backend, keys, args), local, convert)

    def _orphan(self, backend: str, args: list[Any], reply: Any) -> None:
        """An admission granted to a caller that gave up waiting (cancelled): hand it back."""
        if int(reply[0]) and reply[2] != "":
            entry = Entry(str(reply[2]), int(args[2]), True)
            task = asyncio.get_running_loop().create_task(self.adjust(backend, entry, None, int(args[3]) / 1000))
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)

    def fleet_size(self, backend: str) -> int:
        """How many stores (processes) used `backend`'s shared window lately, as last seen (1 before the first)."""
        return self._fleet.get(backend, 1)

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        if not entry.shared:
            await self.local.adjust(backend, entry, tokens, window)
            return
        keys = self._keys(backend, "rl:log", "rl:tokens")
        args = [f"{entry.id}:{entry.tokens}", entry.id, tokens or 0, 1 if tokens is None else 0]

        async def nothing() -> None:  # the entry lives in Redis; while it is down there is nothing to correct
            return None

        await self._either(lambda: self._adjusts.run(backend, keys, args), nothing, lambda reply: None)

    async def pause(self, backend: str, seconds: float) -> float:
        return await self._shared("pause", self._keys(backend, "pause"), [max(1, _ms(seconds))],
                                  lambda: self.local.pause(backend, seconds), lambda reply: int(reply) / 1000)

    async def usage(self, backend: str, window: float) -> WindowUsage:
        def convert(reply: Any) -> WindowUsage:
            return WindowUsage(int(reply[0]), int(reply[1]), int(reply[2]) / 1000, True)

        keys = self._keys(backend, "rl:log", "rl:tokens", "pause")
        return await self._shared("usage", keys, [_ms(window)], lambda: self.local.usage(backend, window), convert)

    # -- breaker records ------------------------------------------------------------------------------------------

    async def _breaker(self, name: str, backend: str, window: float, extra: list[Any],
                       local: Callable[[], Awaitable[BreakerRecord]]) -> BreakerRecord:
        keys = self._keys(backend, "breaker", "breaker:window")
        return await self._shared(name, keys, [max(1, _ms(window / BUCKETS)), *extra], local, _record)

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("breaker_state", backend, window, [],
                                   lambda: self.local.breaker_state(backend, window))

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("record_outcome", backend, window, [1 if ok else 0],
                                   lambda: self.local.record_outcome(backend, ok, window))

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("open_breaker", backend, window, [max(1, _ms(seconds))],
                                   lambda: self.local.open_breaker(backend, seconds, window))

    async def claim_probe(self, backend: str, lease: float) -> bool:
        keys = self._keys(backend, "breaker", "breaker:window")
        return await self._shared("claim_probe", keys, [1000, max(1, _ms(lease))],
                                  lambda: self.local.claim_probe(backend, lease), lambda reply: int(reply) == 1)

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("close_breaker", backend, window, [],
                                   lambda: self.local.close_breaker(backend, window))

    async def aclose(self) -> None:
        """Close the connection pool (of the running loop's client) and stop any reconnection attempt."""
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        await self._admits.drain()  # batches in flight finish (bounded by `timeout` each), and hand-backs with them
        if self._orphans:
            await asyncio.gather(*self._orphans, return_exceptions=True)
        await self._adjusts.drain()
        conn, self._conn = self._conn, None
        if conn is not None and conn.loop is asyncio.get_running_loop():
            conn.keeper.cancel()
            await conn.close()


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000))


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def _share(limit: int, fleet: int) -> int:
    return max(1, limit // fleet) if limit else 0


def _admission(reply: Any, tokens: int) -> Admission:
    granted, wait, tag, requests_left, tokens_left, _ = reply
    requests = None if int(requests_left) < 0 else int(requests_left)
    left = None if int(tokens_left) < 0 else int(tokens_left)
    if not int(granted):
        return Admission(False, int(wait) / 1000, str(tag), None, requests, left, True)
    entry = None if tag == "" else Entry(str(tag), tokens, True)
    return Admission(True, 0.0, "", entry, requests, left, True)


def _record(reply: Any) -> BreakerRecord:
    closed, open_for, probe, ok, failed, consecutive, opened = (int(value) for value in reply)
    return breaker_record(open_for / 1000, closed == 1, probe == 1, ok, failed, consecutive, opened, True)
