"""`maybe_await`: the one place a value that may or may not be awaitable is awaited.

A custom backend's methods may be plain functions or `Mock`s that return a value (README.md, "ScoutAgent
compatibility"); an SDK's `close()` may be sync or async.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["maybe_await"]


async def maybe_await(value: Any) -> Any:
    """`value`, awaited when it is awaitable."""
    return await value if inspect.isawaitable(value) else value
