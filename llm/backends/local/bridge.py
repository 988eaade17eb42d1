"""`TokenBridge`: hands items from a producer thread to an asyncio consumer, bounded and lossless.

The local backend generates tokens in a worker thread; the event loop must neither block on it nor lose anything it
produces.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Generic, TypeVar

__all__ = ["TokenBridge"]

T = TypeVar("T")

_END = object()


class TokenBridge(Generic[T]):
    """A bounded, lossless queue from one producer thread to one asyncio consumer. Create it in the consumer's loop.

    * backpressure: `put()` blocks the producer while `maxsize` items wait unread (a slow reader slows generation down
      instead of growing a buffer), and never drops an item;
    * an end marker that is never dropped either: `finish()` always enqueues it, even when the buffer is full, so the
      consumer always learns how the production ended (normally, or with the producer's exception);
    * prompt cancellation: when the consumer closes the bridge (`aclose()`, `break`, task cancellation), the producer's
      next `put()` returns False at once, and a producer blocked on a full buffer wakes up;
    * no wait forever: a producer blocked longer than `put_timeout` (a consumer that stopped reading without closing)
      gives up, and `put()` returns False.

    The consumer wakes through `loop.call_soon_threadsafe`, so the loop never blocks on a lock held for long: the lock
    only guards a deque.

    Args:
        maxsize: how many unread items the producer may get ahead before `put()` blocks.
        put_timeout: the longest `put()` blocks on a full buffer, in seconds; None waits as long as the bridge is open.
    """

    def __init__(self, maxsize: int = 32, put_timeout: float | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._loop = asyncio.get_running_loop()
        self._maxsize = maxsize
        self._put_timeout = put_timeout
        self._items: collections.deque[object] = collections.deque()
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._consumer_waiting = False
        self._closed = False
        self._finished = False
        self._ended = False

    # -- producer side (any thread) ----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the consumer closed the bridge: the producer should stop."""
        return self._closed

    def put(self, item: T) -> bool:
        """Enqueue an item, blocking while the buffer is full. False when the consumer is gone (or, after
        `put_timeout`, stopped reading): the item was not delivered and the producer should stop."""
        deadline = None if self._put_timeout is None else time.monotonic() + self._put_timeout
        with self._cond:
            while len(self._items) >= self._maxsize and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            if self._closed or self._finished:
                return False
            self._items.append(item)
            self._wake_consumer()
        return True

    def finish(self, error: BaseException | None = None) -> None:
        """Enqueue the end marker (with the producer's exception, if any). Never blocks, never dropped; idempotent."""
        with self._cond:
            if self._finished:
                return
            self._finished = True
            self._error = error
            self._items.append(_END)
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        # Called with the lock held. Only a consumer that found the buffer empty is waiting for a wake-up.
        if not self._consumer_waiting or self._closed:
            return
        self._consumer_waiting = False
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the consumer's loop is closed: nobody will read
            self._closed = True

    # -- consumer side (the loop) ------------------------------------------------------------------------------------

    async def get(self) -> T:
        """The next item. Raises `StopAsyncIteration` at the end, or the producer's exception."""
        while True:
            with self._cond:
                if self._ended or self._closed:
                    raise StopAsyncIteration
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify()
                    if item is _END:
                        return self._end()
                    return item  # type: ignore[return-value]  # everything but _END came from put(item: T)
                self._ready.clear()
                self._consumer_waiting = True
            await self._ready.wait()

    def _end(self) -> T:
        self._ended = True
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    def __aiter__(self) -> TokenBridge[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    def close(self) -> None:
        """Stop consuming: drop what is buffered and wake a blocked producer, whose next `put()` returns False."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    async def aclose(self) -> None:
        """`close()`, awaitable (the shape `aclose_quietly` and async generators use)."""
        self.close()
