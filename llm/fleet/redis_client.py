"""How `RedisStore` (`llm.fleet.redis_store`) reaches the server: one redis-py asyncio client per event loop with the
store's scripts registered, and group commit of one script's calls. Behaviour: README.md, "Running a fleet".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from llm.fleet.redis_scripts import SCRIPTS

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__: list[str] = []  # private to llm.fleet

T = TypeVar("T")


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


class _Down(Exception):
    """The store is down: a call is served by its fallback instead."""


class _WrongReply(Exception):
    """Redis answered something the store cannot use: a reply of the wrong shape, bytes that are not UTF-8, a
    protocol answer redis-py cannot read. Like an outage, it sends the store to its local state."""


async def _answer(awaitable: Awaitable[T]) -> T:
    """What Redis answered. Besides a transport or Redis error (passed on as they are), whatever redis-py raises while
    reading the answer is the server's wrong answer: `_WrongReply`, without the parser's chain."""
    try:
        return await awaitable
    except (OSError, TimeoutError, _redis_error()):
        raise
    except Exception as exc:
        raise _WrongReply(f"{type(exc).__name__}: {exc}"[:200]) from None


class _Connection:
    """One client (and its one connection pool) bound to the event loop that made it, with the scripts registered.

    A keeper task closes the pool when that loop shuts down (`asyncio.run` cancels it on exit), so a store used
    across successive `asyncio.run()` calls leaks no socket.
    """

    def __init__(self, url: str, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client: Redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), decode_responses=True,  # the store retries by falling back, never by waiting
        )
        self.loop = loop
        self.closed = False
        self.scripts: dict[str, AsyncScript] = {
            name: self.client.register_script(text) for name, text in SCRIPTS.items()
        }
        self.keeper = loop.create_task(self._close_at_loop_end(), name="scout-llm-redis-pool")

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await _answer(self.scripts[name](keys=keys, args=args))

    async def check(self, keys: list[str], kinds: dict[str, str]) -> None:
        """PING, then each key holds the type `kinds` names for it (by its last part, `rl:log`, ...) or none, and a
        string or hash one holds integers: the scripts could read it. `_WrongReply` names the first that does not."""
        await _answer(self.client.ping())
        if not keys:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            types = await _answer(pipe.execute())
        readable = [(key, kind) for key, kind in zip(keys, types, strict=False) if kind in ("string", "hash")]
        for key, kind in zip(keys, types, strict=False):
            if kind not in ("none", kinds[key.partition("}:")[2]]):
                raise _WrongReply(f"{key} holds a {str(kind)[:20]}, not a {kinds[key.partition('}:')[2]]}")
        async with self.client.pipeline(transaction=False) as pipe:
            for key, kind in readable:
                if kind == "string":
                    pipe.get(key)
                else:
                    pipe.hvals(key)
            values = await _answer(pipe.execute())
        for (key, _), value in zip(readable, values, strict=False):
            if not all(_number(item) for item in (value if isinstance(value, list) else [value])):
                raise _WrongReply(f"{key} holds a value that is not a number")

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.client.aclose()

    async def _close_at_loop_end(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.close()


_Queue = list[tuple[list[Any], "asyncio.Future[Any]"]]


class _Batches:
    """Group commit for one script: calls that arrive while a batch of the same backend is in flight are sent together
    as the next batch (one command, one reply), so many concurrent calls cost a few round trips, not one each. A call
    waits for at most the batch in flight and its own, each bounded by the store's `timeout`.

    Args:
        send: runs the script once (bounded by the store's timeout; raises `_Down` while the store is down).
        script / head: the script's name and the arguments that open every batch.
        orphan: told of a reply whose caller stopped waiting (cancelled), with the caller's arguments.
    """

    def __init__(self, send: Callable[[str, list[str], list[Any]], Awaitable[Any]], script: str, head: list[Any],
                 orphan: Callable[[str, list[Any], Any], None] | None) -> None:
        self.send, self.script, self.head, self.orphan = send, script, head, orphan
        self._queues: dict[str, _Queue] = {}
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

    async def _send(self, backend: str, keys: list[str], queue: _Queue) -> None:
        args = [*self.head, *(arg for item, _ in queue for arg in item)]
        try:
            replies = await self.send(self.script, keys, args)
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
        if len(replies) != len(queue):  # one answer per call, or none can be trusted
            wrong = _WrongReply(f"{self.script}: {len(replies)} answers to {len(queue)} calls")
            for _, future in queue:
                if not future.done():
                    future.set_exception(wrong)
            return
        for (item, future), reply in zip(queue, replies, strict=True):
            if not future.done():
                future.set_result(reply)
            elif self.orphan is not None:
                self.orphan(backend, item, reply)


#: A number as Lua's `tonumber` reads what the scripts store (integers; a float where Lua formats one).
_NUMBER = re.compile(r"-?\d{1,20}(\.\d+)?(e[-+]?\d+)?", re.ASCII | re.IGNORECASE)


def _number(value: object) -> bool:
    """Whether a stored value reads as a number (None: the key went away since its type was read)."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return True
    return isinstance(value, str) and len(value) <= 40 and _NUMBER.fullmatch(value) is not None
