"""The machinery shared by the fake vendor servers: a real HTTP server on 127.0.0.1 that records every request and
plays scripted replies (answers, recorded bodies, faults) before falling back to the vendor's default behaviour.

A vendor fake subclasses `FakeServer`, adds its routes with `self.route(method, path, handler)` and writes its
handlers as `async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web


@dataclass
class Recorded:
    """One request the server saw."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: Any  # parsed JSON, or the raw bytes when not JSON


# -- scripted replies ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A complete HTTP answer."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> as is
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class StreamReply:
    """A streamed 200 answer: `chunks` written one by one with `delay` seconds between them, then `then`:
    "end" (close cleanly), "drop" (kill the connection), or "hang" (stay silent until the client gives up)."""

    chunks: Iterable[bytes | str]
    content_type: str = "text/event-stream"
    delay: float = 0.0
    then: str = "end"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Accept the request and never answer (until the server stops)."""


@dataclass
class Reset:
    """Drop the connection before sending any header."""


@dataclass
class Delay:
    """Wait `seconds`, then play `then` (or the default behaviour when None)."""

    seconds: float
    then: Any = None


Script = Reply | StreamReply | Hang | Reset | Delay
Handler = Callable[[web.Request, Recorded], Awaitable[web.StreamResponse]]


def sse(events: Iterable[Mapping[str, Any] | str], *, event_names: Iterable[str | None] | None = None) -> list[str]:
    """Server-sent-event frames: `data: <json>\\n\\n`, with `event: <name>` lines when names are given."""
    names = list(event_names) if event_names is not None else None
    frames = []
    for i, payload in enumerate(events):
        data = payload if isinstance(payload, str) else json.dumps(payload)
        name = names[i] if names is not None else None
        frames.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return frames


class FakeServer:
    """A fake vendor API on 127.0.0.1. Use as `async with FakeX() as server:`; `server.url` is its base URL."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.requests: list[Recorded] = []
        self.script: deque[Script] = deque()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting and inspection -------------------------------------------------------------------------------

    def enqueue(self, *replies: Script) -> None:
        """Queue replies; each request takes the next one, then the default behaviour when the queue is empty."""
        self.script.extend(replies)

    def count(self, path_part: str = "") -> int:
        """How many requests whose path contains `path_part` the server saw."""
        return sum(1 for r in self.requests if path_part in r.path)

    def route(self, method: str, path: str, handler: Handler) -> None:
        async def entry(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            recorded = Recorded(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
            self.requests.append(recorded)
            if self.script:
                return await self.play(self.script.popleft(), request, recorded, handler)
            return await handler(request, recorded)

        self.app.router.add_route(method, path, entry)

    async def play(
        self, item: Script, request: web.Request, recorded: Recorded, default: Handler
    ) -> web.StreamResponse:
        if isinstance(item, Delay):
            await asyncio.sleep(item.seconds)
            if item.then is None:
                return await default(request, recorded)
            return await self.play(item.then, request, recorded, default)
        if isinstance(item, Reply):
            return reply(item)
        if isinstance(item, StreamReply):
            return await self.stream(request, item)
        if isinstance(item, Hang):
            await self._stopping.wait()
            raise ConnectionResetError("server stopping")
        if isinstance(item, Reset):
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("reset by fake server")
        raise TypeError(f"unknown script item {item!r}")

    async def stream(self, request: web.Request, item: StreamReply) -> web.StreamResponse:
        response = web.StreamResponse(status=item.status, headers=_headers(item.content_type, item.headers))
        await response.prepare(request)
        for chunk in item.chunks:
            if item.delay:
                await asyncio.sleep(item.delay)
            await response.write(chunk.encode() if isinstance(chunk, str) else chunk)
        if item.then == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("dropped by fake server")
        if item.then == "hang":
            await self._stopping.wait()
            raise ConnectionResetError("server stopping")
        await response.write_eof()
        return response


def reply(item: Reply) -> web.Response:
    body = item.body
    if isinstance(body, dict | list):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body or b""
    return web.Response(status=item.status, body=data, headers=_headers(item.content_type, item.headers))


#: Headers the server sets itself: a recorded value describes the recorded bytes, not the body sent here (a recorded
#: `content-length: 606` on a re-serialised body makes the client fail to read it).
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection"})


def _headers(content_type: str, scripted: Mapping[str, str]) -> dict[str, str]:
    return {"Content-Type": content_type, **{k: v for k, v in scripted.items() if k.lower() not in FRAMING_HEADERS}}


def json_error(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return reply(Reply(status=status, body=dict(body), headers=dict(headers or {})))


ServerT = TypeVar("ServerT", bound="FakeServer")


@contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """Run a fake server on an event loop of its own, in a thread of its own: for tests that run `asyncio.run()` (or
    several loops, or worker processes) themselves."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-server", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
