"""A fast fake vendor server for the benchmarks: OpenAI and Anthropic dialects on one port, pre-rendered answers.

    python -m bench.server [--chunks 20] [--port 0]      # prints "PORT <n>" once it listens

It is a bare `asyncio.Protocol` (uvloop when installed) that parses just enough HTTP/1.1 to route a request and
answers with bytes rendered at start-up, so that on one core it serves several times what the fastest client can ask
for: the benchmark measures the clients, not the server. It is not a protocol-faithful fake (that is
`tests/fakes/`): it never validates a request.

Routes (any path prefix):
    POST .../chat/completions   OpenAI Chat Completions: JSON, or with `"stream": true` SSE of N text chunks, a
                                finish chunk, a usage chunk and `[DONE]`.
    POST .../messages           Anthropic Messages: JSON, or SSE message_start, content_block_start, N deltas,
                                content_block_stop, message_delta, message_stop.
    GET  .../models             a one-model list (both dialects).
A model name containing "hold" makes a stream stop after its first text chunk and stay open until the client closes
it (or `--hold-seconds` pass, then it finishes): the "1,000 open streams" memory load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODEL = "bench-model"
TEXT = "Hello from the bench server."
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
HOLD_RE = re.compile(rb'"model"\s*:\s*"[^"]*hold')


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        "x-request-id: req_bench\r\nrequest-id: req_bench\r\n\r\n"
    )
    return head.encode() + body


def _chunked(frame: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(frame), frame)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-request-id: req_bench\r\nrequest-id: req_bench\r\n\r\n"
)
STREAM_END = b"0\r\n\r\n"


@dataclass(frozen=True)
class Rendered:
    """One dialect's answers: the whole JSON response, and a stream split where a held stream pauses."""

    whole: bytes
    stream_head: bytes  # headers + frames up to and including the first text chunk
    stream_tail: bytes  # the remaining frames and the end of the chunked body


def _split(frames: list[bytes], first_text: int) -> tuple[bytes, bytes]:
    head = STREAM_HEAD + b"".join(_chunked(f) for f in frames[: first_text + 1])
    tail = b"".join(_chunked(f) for f in frames[first_text + 1:]) + STREAM_END
    return head, tail


def render_openai(chunks: int) -> Rendered:
    """OpenAI Chat Completions: a JSON answer and a stream of `chunks` text deltas."""
    base = {"id": "chatcmpl-bench", "created": 1700000000, "model": MODEL, "system_fingerprint": "fp_bench"}
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    whole = {**base, "object": "chat.completion", "usage": usage, "choices": [{
        "index": 0, "message": {"role": "assistant", "content": TEXT, "refusal": None},
        "logprobs": None, "finish_reason": "stop"}]}

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {**base, "object": "chat.completion.chunk", "choices": [choice], "usage": None}
        return b"data: " + _json(body) + b"\n\n"

    frames = [chunk({"role": "assistant", "content": "tok0 "}, None)]
    frames += [chunk({"content": f"tok{i} "}, None) for i in range(1, chunks)]
    frames.append(chunk({}, "stop"))
    usage_chunk = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    frames += [b"data: " + _json(usage_chunk) + b"\n\n", b"data: [DONE]\n\n"]
    return Rendered(_response(_json(whole)), *_split(frames, 0))


def render_anthropic(chunks: int) -> Rendered:
    """Anthropic Messages: a JSON answer and an event stream of `chunks` text deltas."""
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL}
    whole = {**message, "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
             "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 7}}

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + _json({"type": name, **data}) + b"\n\n"

    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": 12, "output_tokens": 1}}
    frames = [event("message_start", {"message": start}),
              event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
    frames += [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}})
               for i in range(chunks)]
    frames += [event("content_block_stop", {"index": 0}),
               event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                       "usage": {"output_tokens": chunks}}),
               event("message_stop", {})]
    return Rendered(_response(_json(whole)), *_split(frames, 2))


MODELS = _response(_json({
    "object": "list", "has_more": False, "first_id": MODEL, "last_id": MODEL,
    "data": [{"id": MODEL, "object": "model", "type": "model", "created": 0, "owned_by": "bench",
              "display_name": MODEL, "created_at": "2025-01-01T00:00:00Z"}],
}))
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class BenchProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive, requests with a Content-Length body, pre-rendered answers."""

    def __init__(self, routes: dict[bytes, Rendered], hold_seconds: float) -> None:
        self.routes = routes
        self.hold_seconds = hold_seconds
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.held: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held is not None:
            self.held.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.held is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4: end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        path = head[: head.find(b"\r\n")].split(b" ")[1].split(b"?")[0]
        if path.endswith(b"/models"):
            self.transport.write(MODELS)
            return
        rendered = self.routes.get(path.rsplit(b"/", 1)[-1])
        if rendered is None:
            self.transport.write(NOT_FOUND)
        elif not STREAM_RE.search(body):
            self.transport.write(rendered.whole)
        elif HOLD_RE.search(body):
            self.transport.write(rendered.stream_head)
            self.held = asyncio.get_running_loop().call_later(self.hold_seconds, self.release, rendered)
        else:
            self.transport.write(rendered.stream_head + rendered.stream_tail)

    def release(self, rendered: Rendered) -> None:
        self.held = None
        if self.transport is not None:
            self.transport.write(rendered.stream_tail)
            if self.buffer:
                self.data_received(b"")


def _content_length(head: bytes) -> int:
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    return int(head[start: stop if stop >= 0 else None])


def routes_for(chunks: int) -> dict[bytes, Rendered]:
    """Last path segment -> the dialect's answers (`/v1/chat/completions`, `/v1/messages`)."""
    openai, anthropic = render_openai(chunks), render_anthropic(chunks)
    return {b"completions": openai, b"messages": anthropic}


async def serve(port: int, chunks: int, hold_seconds: float, ready: Callable[[int], None]) -> None:
    routes = routes_for(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BenchProtocol(routes, hold_seconds), "127.0.0.1", port, backlog=4096)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per stream")
    parser.add_argument("--hold-seconds", type=float, default=60.0, help="how long a held stream stays open")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        print(f"PORT {port}", flush=True)

    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(args.port, args.chunks, args.hold_seconds, ready))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
