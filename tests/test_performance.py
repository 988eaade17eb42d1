"""The fast path, as behaviour (timings are `make bench`'s job, not the tests'): the vendors' aiohttp transport is in
use when installed, one pooled client per backend keeps its connections alive across bursts, a successful call never
enters the retry machinery, a stream's idle bound costs one timer yet still fires, aiohttp errors map to our tree, and
`import llm` stays light.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from aiohttp import web

import llm.call.chain
from llm.backends.claude import translate_anthropic_error
from llm.backends.openai import translate_openai_error
from llm.backends.sdk.transport import transport_failure
from llm.base import LLMBackend, LLMConfig, LLMRequest
from llm.call.idle import IdleTimeout
from llm.errors import LLMConfigError, LLMConnectionError, LLMStreamError, LLMTimeoutError
from llm.manager import LLMManager
from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.gemini_fake import VENDOR as GEMINI
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.server import FakeServer, Reset, StreamReply
from tests.fakes.vendor import Vendor

SDK_VENDORS = pytest.mark.parametrize("vendor", [OPENAI, CLAUDE], ids=["openai", "claude"])
SDKS = {"openai": openai, "claude": anthropic}


def hello() -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=20)


def backend_for(vendor: Vendor, server: FakeServer, **kwargs: Any) -> LLMBackend:
    return vendor.backend_cls(vendor.config(server, timeout=2), **kwargs)  # type: ignore[call-arg]


class PeerTracking:
    """Adds to a fake server a record of the client ports its requests came from (one per TCP connection)."""

    def __init__(self, server: FakeServer) -> None:
        self.peers: set[Any] = set()

        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            assert request.transport is not None
            self.peers.add(request.transport.get_extra_info("peername"))
            return await handler(request)  # type: ignore[no-any-return]

        server.app.middlewares.append(track)


# -- the transport --------------------------------------------------------------------------------------------------


@SDK_VENDORS
async def test_aiohttp_transport_is_the_default_when_installed(vendor: Vendor) -> None:
    sdk = SDKS[vendor.name]
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server)
        try:
            response = await backend.generate(hello())
            http_client = backend._client._client
            assert isinstance(http_client, sdk.DefaultAioHttpClient)
            assert type(http_client._transport).__name__ == "AiohttpTransport"
            assert isinstance(http_client._transport.client, aiohttp.ClientSession)  # the request went through it
        finally:
            await backend.cleanup()
    assert response.content
    assert server.count(vendor.generate_path) == 1


@SDK_VENDORS
async def test_httpx_transport_on_request(vendor: Vendor) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server, http_transport="httpx")
        try:
            assert (await backend.generate(hello())).content
            http_client = backend._client._client
            assert isinstance(http_client._transport, httpx2.AsyncHTTPTransport)
        finally:
            await backend.cleanup()


@SDK_VENDORS
def test_unknown_transport_is_refused_at_construction(vendor: Vendor) -> None:
    config = LLMConfig(backend_type=vendor.backend_type, model_name=vendor.model, api_key=vendor.api_key)
    with pytest.raises(LLMConfigError, match="http_transport"):
        vendor.backend_cls(config, http_transport="curl")  # type: ignore[call-arg]


@SDK_VENDORS
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_one_client_per_backend_reused_by_every_call(vendor: Vendor, transport: str) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server, http_transport=transport)
        try:
            await backend.initialize()
            client, http_client = backend._client, backend._client._client
            await backend.generate(hello())
            assert [text async for text in backend.stream_generate(hello())]
            await asyncio.gather(*(backend.generate(hello()) for _ in range(5)))
            assert backend._client is client and backend._client._client is http_client
        finally:
            await backend.cleanup()
    assert server.count(vendor.generate_path) == 7


@pytest.mark.parametrize(("vendor", "options"), [
    (OPENAI, {"http_transport": "aiohttp"}), (OPENAI, {"http_transport": "httpx"}),
    (CLAUDE, {"http_transport": "aiohttp"}), (CLAUDE, {"http_transport": "httpx"}), (GEMINI, {}),
], ids=["openai-aiohttp", "openai-httpx", "claude-aiohttp", "claude-httpx", "gemini-httpx"])
async def test_pool_keeps_every_connection_of_a_burst_alive(vendor: Vendor, options: dict[str, str]) -> None:
    """Two bursts of 110 concurrent calls share 110 connections at most. (httpx2's pools keep 100 idle connections
    in the SDKs' setup and 20 by default, so their second burst would open new ones.)"""
    server = vendor.fake_cls()
    tracking = PeerTracking(server)
    async with server:
        backend = backend_for(vendor, server, **options)
        try:
            for _ in range(2):
                await asyncio.gather(*(backend.generate(hello()) for _ in range(110)))
        finally:
            await backend.cleanup()
    assert server.count(vendor.generate_path) == 220
    assert 1 < len(tracking.peers) <= 110, len(tracking.peers)


# -- errors the aiohttp transport raises ---------------------------------------------------------------------------


@SDK_VENDORS
async def test_reset_before_headers_is_a_connection_error_on_aiohttp(vendor: Vendor) -> None:
    """OpenAI's aiohttp transport maps a dropped connection to httpx2.ConnectTimeout; it is no timeout."""
    async with vendor.fake_cls() as server:
        server.enqueue(Reset())
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMConnectionError) as caught:
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert not isinstance(caught.value, LLMTimeoutError)
    assert transport_failure(caught.value) == "connection"
    assert server.count(vendor.generate_path) == 1


@SDK_VENDORS
async def test_drop_mid_stream_on_aiohttp_keeps_the_partial_text(vendor: Vendor) -> None:
    async with vendor.fake_cls() as server:
        server.enqueue(vendor.dropped_stream)
        backend = backend_for(vendor, server)
        try:
            seen = []
            with pytest.raises(LLMStreamError) as caught:
                async for text in backend.stream_generate(hello()):
                    seen.append(text)
        finally:
            await backend.cleanup()
    assert seen and caught.value.partial_content == "".join(seen)


@pytest.mark.parametrize("translate", [translate_openai_error, translate_anthropic_error], ids=["openai", "claude"])
@pytest.mark.parametrize(("raw", "expected"), [
    (aiohttp.ClientPayloadError("Response payload is not completed"), LLMConnectionError),
    (aiohttp.ServerDisconnectedError(), LLMConnectionError),
    (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), LLMTimeoutError),
    (ConnectionResetError(104, "Connection reset by peer"), LLMConnectionError),
], ids=["payload", "disconnected", "socket-timeout", "reset"])
def test_aiohttp_errors_that_escape_the_sdk_are_mapped(translate: Any, raw: Exception, expected: type) -> None:
    mapped = translate(raw, backend="b", model="m")
    assert type(mapped) is expected
    wrapped = httpx2.ConnectTimeout("mapped by the transport")  # what OpenAI's copy of the transport raises
    wrapped.__cause__ = raw
    assert type(translate(wrapped, backend="b", model="m")) is expected


# -- the manager's fast path ------------------------------------------------------------------------------------------


async def test_successful_calls_never_enter_the_retry_machinery(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[int] = []
    original = llm.call.chain.Call._wait

    def counting_wait(self: Any, slot: Any, exc: BaseException, number: int) -> float:
        waits.append(number)
        return original(self, slot, exc, number)

    monkeypatch.setattr(llm.call.chain.Call, "_wait", counting_wait)
    async with OPENAI.fake_cls() as server, LLMManager(timeout=5, retry_delay=0.01) as manager:
        await manager.register_backend(backend_for(OPENAI, server))
        await manager.generate(hello())
        assert [t async for t in manager.stream_generate(hello())]
        assert waits == []
        server.enqueue(OPENAI.error_reply(500, {}))
        response = await manager.generate(hello())  # a failed first attempt computes one backoff
    assert waits == [1]
    assert [a["outcome"] for a in response.metadata["attempts"]] == ["LLMServerError", "ok"]
    assert server.count(OPENAI.generate_path) == 4


async def test_a_non_retryable_first_failure_is_raised_as_it_was() -> None:
    async with OPENAI.fake_cls() as server:
        server.enqueue(OPENAI.error_reply(401, {}))
        async with LLMManager(timeout=5, retry_delay=0.01) as manager:
            await manager.register_backend(backend_for(OPENAI, server))
            with pytest.raises(llm.errors.LLMAuthenticationError) as caught:
                await manager.generate(hello())
    assert caught.value.status_code == 401
    assert server.count(OPENAI.generate_path) == 1


async def test_idle_bound_moves_with_each_event_and_still_fires() -> None:
    """Events 30 ms apart under a 100 ms idle bound: a 0.5 s stream is fine; then a 300 ms gap times out."""
    chunks = [f'data: {{"choices":[{{"index":0,"delta":{{"content":"t{i} "}}}}]}}\n\n' for i in range(15)]
    async with OPENAI.fake_cls() as server:
        server.enqueue(StreamReply(chunks + ['data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
                                             "data: [DONE]\n\n"], delay=0.03))
        server.enqueue(StreamReply(chunks[:2], delay=0.3, then="hang"))
        async with LLMManager(timeout=5, idle_timeout=0.1, retry_attempts=1) as manager:
            await manager.register_backend(backend_for(OPENAI, server))
            assert len([t async for t in manager.stream_generate(hello())]) == 15
            seen = []
            start = time.monotonic()
            with pytest.raises(LLMStreamError, match="stalled") as caught:
                async for text in manager.stream_generate(hello()):
                    seen.append(text)
            elapsed = time.monotonic() - start
    assert caught.value.partial_content == "".join(seen) == "t0 "
    assert 0.3 + 0.09 <= elapsed < 1.5, elapsed


async def test_idle_timeout_keeps_outside_cancellation_a_cancellation() -> None:
    idle = IdleTimeout()
    gate = asyncio.Event()

    async def waiter() -> None:
        with idle.arm(5):
            await gate.wait()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    idle.close()


async def test_idle_timeout_uses_one_timer_for_many_waits() -> None:
    loop = asyncio.get_running_loop()
    idle = IdleTimeout()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for _ in range(100):
        with idle.arm(5):
            await asyncio.sleep(0)
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError), idle.arm(0.02):
        await asyncio.sleep(1)
    idle.close()


# -- import cost ----------------------------------------------------------------------------------------------------


def test_import_llm_does_not_load_pydantic_json_or_logging() -> None:
    """pydantic alone made `import llm` 70 ms slower; a config with a key does not need it either (`APIKey`)."""
    probe = ("import llm, sys; print(sorted(m for m in ('pydantic', 'json', 'logging') if m in sys.modules)); "
             "llm.LLMConfig(backend_type='openai', model_name='m', api_key='k'); print('pydantic' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert lines == ["[]", "False"]


def test_a_key_given_as_text_is_still_kept_secret() -> None:
    config = llm.LLMConfig(backend_type="openai", model_name="m", api_key="sk-canary-123")
    assert "sk-canary-123" not in repr(config)
    assert config.secret() == "sk-canary-123"

