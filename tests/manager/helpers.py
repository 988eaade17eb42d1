"""Shared pieces of the manager tests: fake servers that timestamp requests, backend builders, small probes.

Every backend here is a real adapter on its vendor's real SDK, talking HTTP to a fake vendor server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from llm.backends.deepseek import DeepSeekBackend
from llm.base import LLMBackend, LLMConfig, LLMRequest
from llm.manager import LLMManager
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import FakeServer, Recorded
from tests.fakes.vendor import Vendor
from tests.fakes.vendors import VENDORS

VENDOR = {vendor.name: vendor for vendor in VENDORS}

#: Policy numbers that keep the suite fast; each test overrides what it exercises.
FAST: dict[str, Any] = {"timeout": 5.0, "retry_delay": 0.01, "min_attempt_time": 0.05, "breaker_min_calls": 50}


class TimedRequests(list[Recorded]):
    """A request log that also notes when each request arrived (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Recorded) -> None:
        self.times.append(time.monotonic())
        super().append(item)


class SlowModelsOpenAI(FakeOpenAI):
    """FakeOpenAI whose models listing takes `models_delay` seconds and counts how many run at once."""

    def __init__(self, models_delay: float = 0.0) -> None:
        self.models_delay = models_delay
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__()

    async def models(self, request: Any, recorded: Recorded) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.models_delay)
            return await super().models(request, recorded)
        finally:
            self.in_flight -= 1


def fake_for(kind: str) -> FakeServer:
    """A fake server for a backend kind ("deepseek" speaks the OpenAI protocol)."""
    server = FakeOpenAI() if kind == "deepseek" else VENDOR[kind].fake_cls()
    server.requests = TimedRequests()
    return server


def backend_for(kind: str, server: FakeServer, **overrides: Any) -> LLMBackend:
    """A real adapter for `kind` pointed at `server`; short SDK timeout, fast retry delay."""
    values: dict[str, Any] = {"timeout": 2.0, "retry_delay": 0.01, **overrides}
    if kind == "deepseek":
        config = LLMConfig(backend_type="deepseek", model_name="deepseek-chat", api_key=OPENAI_KEY,
                           base_url=server.url + "/v1", **values)
        return DeepSeekBackend(config)
    vendor: Vendor = VENDOR[kind]
    return vendor.backend(server, **values)


def gen_count(kind: str, server: FakeServer) -> int:
    """Generation requests (streams included) the server saw."""
    path = "/chat/completions" if kind == "deepseek" else VENDOR[kind].generate_path
    return server.count(path)


def open_connections(server: FakeServer) -> int:
    """Connections to the server whose transport is still open."""
    runner = server._runner
    if runner is None or runner.server is None:
        return 0
    return sum(1 for transport in runner.server._connections.values() if not transport.is_closing())


async def wait_closed(server: FakeServer, timeout: float = 1.0) -> float:
    """Seconds until the server has no open connection; fails the test after `timeout`."""
    start = time.monotonic()
    while open_connections(server):
        assert time.monotonic() - start < timeout, f"{open_connections(server)} connection(s) still open"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def request(text: str = "hi", **fields: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": text}], **fields)


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop besides the current one."""
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()}


@asynccontextmanager
async def managed(*kinds: str, backend_options: dict[str, Any] | None = None,
                  **policy: Any) -> AsyncIterator[tuple[LLMManager, list[FakeServer]]]:
    """A manager with one real backend per kind (registered in order, the first is the default), each on its own fake
    server; everything is cleaned up on exit."""
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(fake_for(kind)) for kind in kinds]
        manager = LLMManager(**{**FAST, **policy})
        stack.push_async_callback(manager.cleanup)
        for kind, server in zip(kinds, servers, strict=True):
            assert await manager.register_backend(backend_for(kind, server, **(backend_options or {})))
        yield manager, servers
