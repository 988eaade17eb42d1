"""`maybe_await`: the one place a value that may or may not be awaitable is awaited.

A custom backend's methods may be plain functions or `Mock`s that return a value (README.md, "ScoutAgent
compatibility"); an SDK's `close()` may be sync or async.
"""

from __future__ import annotations

from typing import Any

__all__ = ["maybe_await"]


async def maybe_await(value: Any) -> Any:
    """`value`, awaited when it is awaitable: when its type has `__await__` (a coroutine, a future, an async
    generator's `aclose()`). The type is asked, not `inspect.isawaitable`, whose ABC check costs microseconds on every
    stream's close, and not the instance, which a `Mock` answers for any name."""
    return await value if hasattr(type(value), "__await__") else value
