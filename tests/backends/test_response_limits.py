"""Response size limits (llm/backends/sdk/transport.py, framing.py): what a hostile server sends cannot inflate
without bound.

A compressed body that inflates past `max_response_bytes`, a stream event longer than `max_event_bytes` (one endless
line, or NDJSON line) or with more than `MAX_EVENT_LINES` lines is refused with `LLMServerError` ("response too
large"), fast and without holding the inflated bytes, on both transports and for every SDK backend; the limits are
settings.
"""

from __future__ import annotations

import asyncio
import functools
import time
import tracemalloc
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.backends.sdk import framing as _framing
from llm.backends.sdk.framing import HOLD_LIMIT, MAX_EVENT_LINES, EventBounds, LineBounds, ResponseTooLarge
from llm.backends.sdk.transport import ResponseLimits, limited_stream_class
from llm.base import LLMBackend, LLMConfig, LLMRequest
from llm.errors import LLMConfigError, LLMServerError
from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.gemini_fake import VENDOR as GEMINI
from tests.fakes.ollama_fake import VENDOR as OLLAMA
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.server import FakeServer, StreamReply
from tests.fakes.vendor import Vendor

SDK_VENDORS = pytest.mark.parametrize("vendor", [OPENAI, CLAUDE], ids=["openai", "claude"])
TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
MiB = 1024 * 1024
TIMEOUT = 5.0


@dataclass
class Raw:
    """One answer of `HostileServer`, sent byte for byte (the vendor fakes drop `Content-Encoding`)."""

    chunks: Sequence[bytes]
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200


class HostileServer:
    """A raw HTTP server on 127.0.0.1 answering every POST with the next `Raw`; counts the requests."""

    def __init__(self, *replies: Raw) -> None:
        self.replies = list(replies)
        self.count = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        reply = self.replies[self.count]
        self.count += 1
        response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
        await response.prepare(request)
        try:
            for chunk in reply.chunks:
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client gave up, as it should
        return response

    async def __aenter__(self) -> HostileServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def hostile_backend(vendor: Vendor, server: HostileServer, transport: str = "auto") -> LLMBackend:
    base_url = f"{server.url}/v1" if vendor is OPENAI else server.url
    config = LLMConfig(backend_type=vendor.backend_type, model_name=vendor.model, api_key=vendor.api_key,
                       base_url=base_url, timeout=TIMEOUT)
    return vendor.backend_cls(config, http_transport=transport)  # type: ignore[call-arg]


GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
GZIP_SSE = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}


def hello() -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=20)


def backend_for(vendor: Vendor, server: FakeServer, transport: str = "auto", **extra: Any) -> LLMBackend:
    config = vendor.config(server, timeout=TIMEOUT, extra_params=extra)
    return vendor.backend_cls(config, http_transport=transport)  # type: ignore[call-arg]


@functools.cache
def gzipped(prefix: bytes, filler: bytes, mebibytes: int) -> bytes:
    """gzip of `prefix` then `mebibytes` MiB of `filler`, compressed a MiB at a time (never held inflated here)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = filler * (MiB // len(filler))
    parts = [compressor.compress(prefix)] + [compressor.compress(block) for _ in range(mebibytes)]
    return b"".join([*parts, compressor.flush()])


def pieces(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def call(backend: LLMBackend, stream: bool) -> Any:
    try:
        if stream:
            return [event async for event in backend.stream(hello())]
        return await backend.generate(hello())
    finally:
        await backend.cleanup()


@SDK_VENDORS
@TRANSPORTS
async def test_a_gzip_bomb_is_refused_without_inflating_it(vendor: Vendor, transport: str) -> None:
    """Memory is traced on httpx2 only (tracing aiohttp's many small allocations makes the call ten times slower);
    both transports share the same `LimitedStream`."""
    bomb = gzipped(b"", b"\0", 256)  # 256 MiB of zeros in ~0.25 MB
    assert len(bomb) < MiB
    traced = transport == "httpx"
    async with HostileServer(Raw(pieces(bomb), GZIP_JSON)) as server:
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(LLMServerError, match="response too large") as caught:
                await call(hostile_backend(vendor, server, transport), stream=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - started
    assert "max_response_bytes" in str(caught.value) and caught.value.backend == vendor.name
    assert peak < 100 * MiB, f"{peak / MiB:.0f} MiB held"  # the 32 MiB limit, not 256 MiB
    assert elapsed < TIMEOUT
    assert server.count == 1


@SDK_VENDORS
async def test_an_error_body_that_inflates_too_far_is_refused_too(vendor: Vendor) -> None:
    async with HostileServer(Raw(pieces(gzipped(b"", b"\0", 64)), GZIP_JSON, status=500)) as server:
        with pytest.raises(LLMServerError, match="response too large"):
            await call(hostile_backend(vendor, server), stream=False)


@SDK_VENDORS
@TRANSPORTS
async def test_a_gzip_stream_with_one_endless_line_ends_within_the_deadline(vendor: Vendor, transport: str) -> None:
    prefix = b"event: content_block_delta\n" if vendor is CLAUDE else b""
    body = gzipped(prefix + b"data: ", b"x", 128)  # one 128 MiB line
    async with HostileServer(Raw(pieces(body), GZIP_SSE)) as server:
        started = time.perf_counter()
        with pytest.raises(LLMServerError, match="max_event_bytes"):
            await call(hostile_backend(vendor, server, transport), stream=True)
        elapsed = time.perf_counter() - started
    assert elapsed < TIMEOUT / 2, f"{elapsed:.1f} s"


@SDK_VENDORS
async def test_an_event_of_countless_short_lines_is_refused_fast(vendor: Vendor) -> None:
    """Anthropic's event decoder joins an event's lines by repeated concatenation (quadratic): 100k lines of 8 bytes
    would take it tens of seconds. The line bound stops it first."""
    lines = 100_000
    body = b"event: content_block_delta\n" + b"data: x\n" * lines
    assert len(body) < ResponseLimits().max_event_bytes and lines > MAX_EVENT_LINES
    async with vendor.fake_cls() as server:
        server.enqueue(StreamReply(chunks=pieces(body, 16 * 1024)))
        started = time.perf_counter()
        with pytest.raises(LLMServerError, match="lines"):
            await call(backend_for(vendor, server), stream=True)
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.1f} s"


@SDK_VENDORS
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_the_limits_are_settings(vendor: Vendor, stream: bool) -> None:
    setting = {"max_event_bytes": 40} if stream else {"max_response_bytes": 100}
    async with vendor.fake_cls() as server:
        answered = await call(backend_for(vendor, server), stream)  # the defaults take a normal answer
        assert answered
        with pytest.raises(LLMServerError, match="response too large"):
            await call(backend_for(vendor, server, **setting), stream)
    assert server.count(vendor.generate_path) == 2


@pytest.mark.parametrize("settings", [{"max_response_bytes": 0}, {"max_event_bytes": -1},
                                      {"max_response_bytes": "32MB"}, {"max_event_bytes": True}])
def test_a_limit_that_is_not_a_positive_byte_count_is_a_config_error(settings: dict[str, Any]) -> None:
    with pytest.raises(LLMConfigError, match=next(iter(settings))):
        ResponseLimits.from_settings(settings)


def test_event_bounds_count_lines_and_events_across_any_split() -> None:
    stream = b"event: a\r\ndata: 12345\r\n\r\ndata: 1\n\n" * 3
    for cut in range(len(stream)):
        bounds = EventBounds(limit=18)  # the first event holds "event: a" and "data: 12345": 8 + 11 bytes
        with pytest.raises(ResponseTooLarge):
            bounds.feed(stream[:cut])
            bounds.feed(stream[cut:])
        fitting = EventBounds(limit=19)
        fitting.feed(stream[:cut])
        fitting.feed(stream[cut:])
        assert fitting.event_bytes == 0 and fitting.line == 0  # every event ended with its blank line


def test_a_crlf_split_between_pieces_is_one_line_end_not_a_blank_line() -> None:
    bounds = EventBounds(limit=17)
    bounds.feed(b"data: 1234\r")
    bounds.feed(b"\ndata: 5")  # same event: 10 + 7 bytes; a blank line here would have reset the count
    with pytest.raises(ResponseTooLarge):
        bounds.feed(b"6789\n")



@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.lists(st.sampled_from([b"a", b"data: x", b"\n", b"\n\n", b"\r", b"\r\n"]), max_size=12)
                       .map(b"".join), min_size=1, max_size=5),
       limit=st.sampled_from([5, 12, 40, 1000]))
def test_event_bounds_fast_path_counts_as_the_line_by_line_loop(pieces: list[bytes], limit: int) -> None:
    outcomes: list[object] = []
    with patch.object(_framing, "MAX_EVENT_LINES", 4):  # small enough for these pieces to reach it
        for feed in (EventBounds.feed, EventBounds.feed_lines):
            bounds = EventBounds(limit)
            try:
                for piece in pieces:
                    feed(bounds, piece)
            except ResponseTooLarge as exc:
                outcomes.append(str(exc))
            else:
                outcomes.append((bounds.line, bounds.event_bytes, bounds.event_lines, bounds.split_crlf))
    assert outcomes[0] == outcomes[1]


# -- every backend: Gemini and Ollama too ------------------------------------------------------------------------------

EVERY_VENDOR = pytest.mark.parametrize("vendor", [OPENAI, CLAUDE, GEMINI, OLLAMA],
                                       ids=["openai", "claude", "gemini", "ollama"])


@EVERY_VENDOR
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_the_limits_are_settings_of_every_backend(vendor: Vendor, stream: bool) -> None:
    setting = {"max_event_bytes": 40} if stream else {"max_response_bytes": 100}
    async with vendor.fake_cls() as server:
        assert await call(vendor.backend(server), stream)  # the defaults take a normal answer
        with pytest.raises(LLMServerError, match="response too large"):
            await call(vendor.backend(server, extra_params=setting), stream)
    assert server.count(vendor.generate_path) == 2


STREAM_TYPES = {"gemini": "text/event-stream", "ollama": "application/x-ndjson"}


@pytest.mark.parametrize("vendor", [GEMINI, OLLAMA], ids=["gemini", "ollama"])
async def test_an_answer_claiming_to_be_a_stream_is_bounded_as_a_whole_when_none_was_asked_for(vendor: Vendor) -> None:
    """Per-event bounds hold only for a request that asked for a stream: a whole answer sent as countless short
    events is still bounded by `max_response_bytes`."""
    body = b"data: {}\n\n" * 20_000 if vendor is GEMINI else b"{}\n" * 70_000  # ~200 KB of short events
    async with HostileServer(Raw(pieces(body), {"Content-Type": STREAM_TYPES[vendor.name]})) as server:
        config = LLMConfig(backend_type=vendor.backend_type, model_name=vendor.model, api_key=vendor.api_key,
                           base_url=server.url, timeout=TIMEOUT, extra_params={"max_response_bytes": 64 * 1024})
        with pytest.raises(LLMServerError, match="max_response_bytes"):
            await call(vendor.backend_cls(config), stream=False)
    assert server.count == 1


def test_ndjson_lines_are_bounded_one_by_one_across_any_split() -> None:
    """Ollama's stream is one JSON object per line: each line, wherever the pieces split it, is held to the limit;
    any number of lines is not."""
    bounds = LineBounds(limit=10)
    for piece in (b"0123456789\n" * 1000, b"01234", b"56789\n0123", b"456789\n", b"\n\n"):
        bounds.feed(piece)
    with pytest.raises(ResponseTooLarge, match="max_event_bytes"):
        bounds.feed(b"0123456789\n0123456789X\n")
    split = LineBounds(limit=10)
    split.feed(b"012345")
    with pytest.raises(ResponseTooLarge):
        split.feed(b"67890")


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_long_event_dripped_in_tiny_pieces_reaches_the_sdk_decoder_in_a_few_large_ones(encoding: str) -> None:
    """The Stainless SDKs' event decoder copies its pending event once per piece it is handed (`data += line`): a
    1 MiB event dripped 16 bytes at a time would cost it 32 GiB of copying. The pieces handed on are few and large,
    and together exactly the body."""
    body = b"event: content_block_delta\ndata: " + b"x" * (MiB - 100) + b"\n\n" + b"event: ping\ndata: {}\n\n"
    async def drip() -> Any:
        data = body if encoding == "identity" else zlib.compress(body, wbits=zlib.MAX_WBITS | 16)
        for start in range(0, len(data), 16):
            yield data[start:start + 16]

    stream = limited_stream_class("httpx2")(drip(), encoding, ResponseLimits(), framing="event")
    handed = [piece async for piece in stream]
    assert b"".join(handed) == body
    assert len(handed) <= MiB // HOLD_LIMIT + 4, len(handed)
