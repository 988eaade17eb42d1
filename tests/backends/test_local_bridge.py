"""`TokenBridge` (llm/backends/local/bridge.py): a real producer thread hands items to the event loop.

Bounded (the producer blocks), lossless (every item and the end marker arrive, in order), and prompt to stop when the
consumer leaves -- the local backend's streaming rests on these. No native library needed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable

import pytest

from llm.backends.local.bridge import TokenBridge


class Producer(threading.Thread):
    """Puts `items` into the bridge, then finishes it (with `error`, if given); records what `put` returned."""

    def __init__(self, bridge: TokenBridge[int], items: Iterable[int], error: BaseException | None = None) -> None:
        super().__init__(daemon=True)
        self.bridge = bridge
        self.items = list(items)
        self.error = error
        self.accepted: list[int] = []
        self.refused_at: int | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        for item in self.items:
            if not self.bridge.put(item):
                self.refused_at = item
                break
            self.accepted.append(item)
        self.bridge.finish(self.error)
        self.finished.set()


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_every_item_and_the_end_arrive_in_order_through_a_small_buffer() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=3)
    producer = Producer(bridge, range(2000))
    producer.start()
    received = []
    async for item in bridge:
        received.append(item)
        if item % 97 == 0:
            await asyncio.sleep(0.001)  # a consumer slower than the producer now and then
    producer.join(2)
    assert received == list(range(2000))
    assert producer.refused_at is None


async def test_the_producer_blocks_on_a_full_buffer_and_resumes_as_items_are_read() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=4)
    producer = Producer(bridge, range(10))
    producer.start()
    await wait_until(lambda: len(producer.accepted) == 4)
    await asyncio.sleep(0.05)
    assert len(producer.accepted) == 4, "the producer must wait while 4 items are unread"
    assert await bridge.get() == 0
    await wait_until(lambda: len(producer.accepted) == 5)
    await asyncio.sleep(0.05)
    assert len(producer.accepted) == 5
    assert [item async for item in bridge] == list(range(1, 10))
    producer.join(2)


async def test_the_end_marker_is_not_dropped_when_the_buffer_is_full() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=2)
    producer = Producer(bridge, [1, 2])
    producer.start()
    assert producer.finished.wait(2), "finish() must not block on a full buffer"
    assert [item async for item in bridge] == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await bridge.get()


async def test_the_producers_error_arrives_after_its_items() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=2)
    producer = Producer(bridge, [1, 2, 3], error=RuntimeError("decode failed"))
    producer.start()
    received = []
    with pytest.raises(RuntimeError, match="decode failed"):
        async for item in bridge:
            received.append(item)
    assert received == [1, 2, 3]
    with pytest.raises(StopAsyncIteration):  # the error is raised once; the bridge has ended
        await bridge.get()
    producer.join(2)


async def test_closing_wakes_a_blocked_producer_and_refuses_further_items() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=2)
    producer = Producer(bridge, range(100))
    producer.start()
    await wait_until(lambda: len(producer.accepted) == 2)
    started = time.monotonic()
    await bridge.aclose()
    assert producer.finished.wait(1)
    assert time.monotonic() - started < 0.5
    assert producer.accepted == [0, 1] and producer.refused_at == 2
    assert bridge.closed and not bridge.put(99)
    with pytest.raises(StopAsyncIteration):
        await bridge.get()


async def test_a_consumer_that_stops_reading_releases_the_producer_after_put_timeout() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=1, put_timeout=0.1)
    producer = Producer(bridge, range(5))
    started = time.monotonic()
    producer.start()
    assert producer.finished.wait(2)
    assert 0.1 <= time.monotonic() - started < 1.0
    assert producer.accepted == [0] and producer.refused_at == 1
    assert [item async for item in bridge] == [0], "what was accepted is still delivered, then the end"


async def test_a_cancelled_consumer_task_leaves_the_bridge_usable_for_close() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=2)
    waiting = asyncio.create_task(bridge.get())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    producer = Producer(bridge, range(7, 20))
    producer.start()
    assert await bridge.get() == 7
    bridge.close()
    assert producer.finished.wait(1)
    assert producer.refused_at is not None and producer.accepted == list(range(7, producer.refused_at))


async def test_put_after_finish_is_refused() -> None:
    bridge: TokenBridge[int] = TokenBridge(maxsize=2)
    bridge.finish()
    assert not bridge.put(1)
    with pytest.raises(StopAsyncIteration):
        await bridge.get()


async def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBridge(maxsize=0)
