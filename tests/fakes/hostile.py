"""A hostile HTTP server in raw asyncio: it says exactly the bytes a test scripts, nothing a framework would fix up.

The vendor fakes (aiohttp) speak each API faithfully; this one speaks HTTP/1.1 just well enough for the SDKs to talk
to it, and then misbehaves on purpose. Each request takes the next scripted `Raw` reply (or `default`); the modes:

* `Raw(status, body, headers)`: any status, headers and body, e.g. a 401 that echoes the key, a 429 with
  `Retry-After: 99999999999`, a JSON answer whose `content` is a number;
* `Raw(..., chunks=[...])`: a body written piece by piece (`delay` between), ended by closing the connection -- the
  way a server-sent-event stream with hostile events is sent;
* `Raw(..., then="hang")`: after the chunks, stay silent until the client gives up;
* `Raw(..., then="reset")`: after the chunks (or before anything, with none), drop the connection.

`Faulty(error, rate)` is a default reply that is `error` with probability `rate`, else a good answer: random faults
for load tests. `requests` lists (method, path, headers) of every request; `count(path)` filters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Faulty", "HostileServer", "Raw", "TCPServer", "openai_answer", "openai_chunks"]


@dataclass
class Raw:
    """One scripted HTTP reply; see the module docstring."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes | str] | None = None
    delay: float = 0.0
    then: str = "end"  # "end" | "hang" | "reset"

    def head(self) -> bytes:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests"}.get(self.status, "X")
        headers = {"content-type": "application/json", **{k.lower(): v for k, v in self.headers.items()}}
        if self.chunks is None:
            headers["content-length"] = str(len(self.payload()))
        headers["connection"] = "keep-alive" if self.keeps_alive() else "close"
        lines = [f"HTTP/1.1 {self.status} {reason}", *(f"{name}: {value}" for name, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def keeps_alive(self) -> bool:
        """A whole body with its length can share the connection with the next request; anything else ends it."""
        return self.chunks is None and self.then == "end"

    def payload(self) -> bytes:
        body = self.body
        if isinstance(body, dict | list):
            return json.dumps(body).encode()
        return body.encode() if isinstance(body, str) else body


@dataclass
class Faulty:
    """A default reply: `error` with probability `rate`, else `good` (a function of the request count)."""

    error: Raw
    rate: float
    good: Callable[[], Raw]
    rng: random.Random = field(default_factory=lambda: random.Random(12))

    def pick(self) -> Raw:
        return self.error if self.rng.random() < self.rate else self.good()


def openai_answer(content: Any = "hi", *, finish_reason: Any = "stop", usage: Any = None,
                  tool_calls: Any = None) -> Raw:
    """An OpenAI Chat Completions answer with any values in its fields (no usage key when `usage` is None)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}
    if usage is not None:
        body["usage"] = usage
    return Raw(200, body)


def openai_chunks(*deltas: dict[str, Any], finish_reason: str | None = "stop", usage: Any = None,
                  done: bool = True) -> Raw:
    """An OpenAI Chat Completions stream: one chunk per delta (any values), the finish reason, usage, [DONE]."""
    events: list[Any] = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                          "choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    if finish_reason is not None:
        events.append({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    if usage is not None:
        events.append({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                       "usage": usage})
    frames = [f"data: {json.dumps(event)}\n\n" for event in events] + (["data: [DONE]\n\n"] if done else [])
    return Raw(200, headers={"content-type": "text/event-stream"}, chunks=frames)


class TCPServer:
    """A raw asyncio TCP server on 127.0.0.1 (a free port), `async with` to start and stop it: `serve` runs once per
    connection; on exit every connection still open is aborted."""

    #: Errors of a client that went away mid-conversation: the connection ends quietly.
    GONE: tuple[type[BaseException], ...] = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self.serve(reader, writer)
        except self.GONE:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self: TCPServerT) -> TCPServerT:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])


TCPServerT = TypeVar("TCPServerT", bound=TCPServer)


class HostileServer(TCPServer):
    """A raw asyncio HTTP/1.1 server on 127.0.0.1 playing scripted `Raw` replies; `async with` starts and stops it."""

    def __init__(self, default: Raw | Faulty | None = None) -> None:
        super().__init__()
        self.default: Raw | Faulty = default if default is not None else openai_answer()
        self.script: deque[Raw] = deque()
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Raw) -> None:
        self.script.extend(replies)

    def count(self, path_part: str = "") -> int:
        return sum(1 for _, path, _ in self.requests if path_part in path)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await self._one_request(reader, writer):
            pass

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection stays open for another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # the client closed its idle connection
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await reader.readexactly(length)
        self.requests.append((method, path, headers))
        if method == "GET":  # a models listing (health checks)
            reply = Raw(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 1,
                                                           "owned_by": "x"}]})
        elif self.script:
            reply = self.script.popleft()
        else:
            reply = self.default.pick() if isinstance(self.default, Faulty) else self.default
        await self._play(reply, writer)
        return reply.keeps_alive()

    async def _play(self, reply: Raw, writer: asyncio.StreamWriter) -> None:
        if reply.then == "reset" and not reply.chunks:
            writer.transport.abort()
            return
        writer.write(reply.head())
        if reply.chunks is None:
            writer.write(reply.payload())
        else:
            for chunk in reply.chunks:
                writer.write(chunk.encode() if isinstance(chunk, str) else chunk)
                await writer.drain()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
        await writer.drain()
        if reply.then == "hang":
            await asyncio.sleep(3600)
        elif reply.then == "reset":
            writer.transport.abort()
