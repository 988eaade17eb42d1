"""RELIABILITY.md scenarios 16-21 ("Streaming") through the manager, against fake vendor servers with the real SDKs.

Retry and failover happen only before the first event reaches the caller; after it, a failure is an `LLMStreamError`
with the partial text, and nothing is re-sent. Closing the stream closes the HTTP response at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llm.base import ResponseDone, TextDelta
from llm.errors import LLMError, LLMServerError, LLMStreamError, LLMTimeoutError
from llm.manager import LLMManager
from tests.fakes.claude_fake import MIDSTREAM_ERROR_FRAME, text_events
from tests.fakes.server import Delay, Hang, StreamReply
from tests.manager.helpers import VENDOR, gen_count, managed, request, wait_closed

KINDS = ["openai", "claude", "gemini", "ollama"]


async def collect(manager: LLMManager, chunks: list[str], **kwargs: object) -> str:
    async for chunk in manager.stream_generate(request(), **kwargs):  # type: ignore[arg-type]
        chunks.append(chunk)
    return "".join(chunks)


def error_only(kind: str) -> StreamReply:
    """A 200 stream whose first (and only) frame is the vendor's in-stream error."""
    reply, _ = VENDOR[kind].midstream_error
    return StreamReply([list(reply.chunks)[-1]], content_type=reply.content_type)


async def clean_text(kind: str) -> str:
    """What the fake answers to `request()` when nothing is scripted."""
    async with managed(kind) as (manager, _):
        return (await manager.generate(request())).content


@pytest.mark.parametrize("kind", KINDS)
async def test_s16_error_before_first_chunk_is_retried_transparently(kind: str) -> None:
    """S16: an in-stream error before any text (a 200 response): retried; the caller sees one clean stream."""
    expected = await clean_text(kind)
    chunks: list[str] = []
    async with managed(kind) as (manager, (server,)):
        server.enqueue(error_only(kind))
        text = await collect(manager, chunks)
    assert text == expected and gen_count(kind, server) == 2


async def test_s16_anthropic_event_error_inside_200_stream_fails_over() -> None:
    """S16: Anthropic's `event: error` after message_start but before any text: failed over to the next backend."""
    async with managed("claude", "deepseek", retry_attempts=1) as (manager, (claude, deepseek)):
        claude.enqueue(StreamReply([*text_events(), MIDSTREAM_ERROR_FRAME]))
        events = [event async for event in manager.stream(request())]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    done = events[-1]
    assert text == "echo: hi" and isinstance(done, ResponseDone)
    assert [a["outcome"] for a in done.response.metadata["attempts"]] == ["LLMServerError", "ok"]
    assert (claude.count("/v1/messages"), deepseek.count("/chat/completions")) == (1, 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_s17_error_after_chunks_no_switch_no_duplicate(kind: str) -> None:
    """S17: an error after some text: LLMStreamError with the partial text and the backend; no retry, no fallback."""
    reply, partial = VENDOR[kind].midstream_error
    chunks: list[str] = []
    async with managed(kind, "deepseek") as (manager, (server, fallback)):
        server.enqueue(reply)
        with pytest.raises(LLMStreamError) as caught:
            await collect(manager, chunks)
        health = manager.get_backend_health(kind)
    assert "".join(chunks) == partial == caught.value.partial_content
    assert caught.value.backend == kind
    assert gen_count(kind, server) == 1 and fallback.count("/chat/completions") == 0
    assert health is not None and health.error_count == 1


@pytest.mark.parametrize("fault", ["dropped_stream", "malformed_chunk"])
@pytest.mark.parametrize("kind", KINDS)
async def test_s18_dropped_or_malformed_stream_is_typed(kind: str, fault: str) -> None:
    """S18: the connection dropped mid-stream, or a malformed chunk: a typed LLMStreamError, cause chained."""
    chunks: list[str] = []
    async with managed(kind) as (manager, (server,)):
        server.enqueue(getattr(VENDOR[kind], fault))
        with pytest.raises(LLMStreamError) as caught:
            await collect(manager, chunks)
    assert chunks and chunks[0] == "Hello" and caught.value.partial_content == "".join(chunks)
    assert caught.value.__cause__ is not None and caught.value.backend == kind
    assert gen_count(kind, server) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_s19_empty_stream_is_a_typed_error(kind: str) -> None:
    """S19: a 200 stream with no event at all: a typed error after the retries, within the bound."""
    content_type = VENDOR[kind].midstream_error[0].content_type
    async with managed(kind, timeout=2.0) as (manager, (server,)):
        server.enqueue(*(StreamReply([], content_type=content_type) for _ in range(3)))
        start = time.monotonic()
        with pytest.raises(LLMError):
            await collect(manager, [])
        elapsed = time.monotonic() - start
    assert gen_count(kind, server) == 3 and elapsed < 2.0, elapsed


async def test_s19_stall_before_first_chunk_hits_first_chunk_timeout() -> None:
    async with managed("openai", timeout=1.0, first_chunk_timeout=0.15, retry_attempts=2) as (manager, (server,)):
        server.enqueue(StreamReply([], then="hang"), StreamReply([], then="hang"))
        start = time.monotonic()
        with pytest.raises(LLMTimeoutError):
            await collect(manager, [])
        elapsed = time.monotonic() - start
    assert server.count("/chat") == 2 and 0.3 <= elapsed < 1.0, elapsed


@pytest.mark.parametrize("kind", KINDS)
async def test_s19_idle_gap_longer_than_idle_timeout(kind: str) -> None:
    """S19: text, then silence: LLMStreamError with the partial text once the idle timeout (0.15 s) passes."""
    reply, _ = VENDOR[kind].midstream_error
    first = list(reply.chunks)[:-1]  # the vendor's opening and text frames, without the error
    chunks: list[str] = []
    async with managed(kind, "deepseek", idle_timeout=0.15) as (manager, (server, fallback)):
        server.enqueue(StreamReply(first, content_type=reply.content_type, then="hang"))
        start = time.monotonic()
        with pytest.raises(LLMStreamError, match="stalled") as caught:
            await collect(manager, chunks)
        elapsed = time.monotonic() - start
    assert caught.value.partial_content == "".join(chunks) == "Hello wor"
    assert fallback.count("/chat") == 0 and 0.15 <= elapsed < 0.8, elapsed


async def test_s19_stream_timeout_bounds_a_trickling_stream_and_the_deadline_does_not() -> None:
    """The call's deadline bounds the first chunk only; `stream_timeout` bounds the whole stream, and its cut is the
    caller's: the backend's health does not hear of it."""
    trickle = StreamReply(VENDOR["openai"].midstream_error[0].chunks[:-1] * 20, delay=0.05)  # type: ignore[index]
    async with managed("openai", timeout=0.2, idle_timeout=1.0, stream_timeout=0.4,
                       breaker_min_calls=1) as (manager, (server,)):
        server.enqueue(trickle)
        start = time.monotonic()
        with pytest.raises(LLMStreamError, match="stream_timeout"):
            await collect(manager, [])
        elapsed = time.monotonic() - start
        health = manager.get_backend_health("openai")
    assert 0.4 <= elapsed < 0.6, elapsed
    assert health is not None and health.breaker_state == "closed" and health.consecutive_failures == 0


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
async def test_s20_midstream_errors_without_http_status_are_typed(kind: str) -> None:
    """S20: an Ollama `{"error": ...}` line / a Gemini error chunk: typed, before and after the first chunk."""
    before = error_only(kind)
    async with managed(kind, retry_attempts=1) as (manager, (server,)):
        server.enqueue(before)
        with pytest.raises(LLMServerError) as early:
            await collect(manager, [])
        server.enqueue(VENDOR[kind].midstream_error[0])
        with pytest.raises(LLMStreamError) as late:
            await collect(manager, [])
    assert early.value.backend == late.value.backend == kind
    assert late.value.partial_content == "Hello wor" and gen_count(kind, server) == 2


def _slow_stream() -> StreamReply:
    return StreamReply(VENDOR["openai"].midstream_error[0].chunks[:-1], then="hang")  # type: ignore[index]


async def test_s21_cancelling_the_consumer_closes_the_connection() -> None:
    """S21: the consuming task is cancelled mid-stream: CancelledError propagates, nothing is retried, and the HTTP
    connection is closed at once."""
    async with managed("openai", "deepseek") as (manager, (server, fallback)):
        server.enqueue(_slow_stream())
        got_first = asyncio.Event()

        async def consume() -> None:
            async for _ in manager.stream_generate(request()):
                got_first.set()

        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        closed_in = await wait_closed(server, 0.2)
        await asyncio.sleep(0.05)
        health = manager.get_backend_health("openai")
    assert task.cancelled() and closed_in < 0.1
    assert server.count("/chat") == 1 and fallback.count("/chat") == 0
    assert health is not None and health.error_count == 0 and health.breaker_state == "closed"


@pytest.mark.parametrize("how", ["aclose", "break"])
async def test_s21_aclose_or_break_closes_the_http_stream(how: str) -> None:
    async with managed("openai") as (manager, (server,)):
        server.enqueue(_slow_stream())
        stream = manager.stream_generate(request())
        if how == "aclose":
            assert await anext(stream) == "Hello"
            await stream.aclose()
        else:
            async for _ in stream:
                break
            del stream  # the loop finalizes the generator as soon as nobody holds it
        closed_in = await wait_closed(server, 0.2)
    assert server.count("/chat") == 1 and closed_in < 0.1


async def test_s21_cancel_during_backoff_or_request_is_not_retried() -> None:
    async with managed("openai", retry_delay=0.3, jitter=0) as (manager, (server,)):
        server.enqueue(VENDOR["openai"].error_reply(503, {}), Delay(0.2))
        for pause in (0.1, 0.05):  # first inside the 0.3 s backoff sleep, then inside the slow request
            task = asyncio.create_task(manager.generate(request()))
            await asyncio.sleep(pause)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.35)
        await wait_closed(server, 0.2)
        server.enqueue(Hang())
        task = asyncio.create_task(manager.generate(request()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_closed(server, 0.2)
    assert server.count("/chat") == 3  # 503, the slow one, the hanging one: no retry after any cancellation
