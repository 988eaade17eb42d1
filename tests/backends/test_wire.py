"""The OpenAI and Anthropic adapters' wire (llm/backends/_wire.py): the SDK builds the request, aiohttp carries it.

What must hold: the fast path is the default with aiohttp and the SDK's generic call with httpx2; it sends exactly
what the SDK's typed call sends; `raw_response` is still the SDK's typed object; complete streams give their
connection back to the pool; bad input never reaches the network; an answer of the wrong shape is a typed error; an
SDK whose internals moved falls back to the generic call; and the event-stream decoder frames events as the SDKs do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import anthropic
import openai
import pytest

from llm.backends._wire import AiohttpWire, SDKWire, SSEParser
from llm.base import DeferredRaw, LLMBackend, LLMRequest
from llm.errors import LLMServerError, LLMValidationError
from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.server import FakeServer, Reply
from tests.fakes.vendor import Vendor
from tests.test_performance import PeerTracking

SDK_VENDORS = pytest.mark.parametrize("vendor", [OPENAI, CLAUDE], ids=["openai", "claude"])
#: Headers that legitimately differ between two requests of one client: per-request ids and what the transport sets.
PER_REQUEST = {"idempotency-key", "content-length", "accept-encoding", "host", "connection"}


def hello(**extra: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=20, temperature=0.3, **extra)


def backend_for(vendor: Vendor, server: FakeServer, **kwargs: Any) -> LLMBackend:
    return vendor.backend_cls(vendor.config(server, timeout=5), **kwargs)  # type: ignore[call-arg]


async def generate_and_stream(backend: LLMBackend) -> tuple[str, str]:
    """One call and one stream on `backend` (closed after): their texts."""
    try:
        response = await backend.generate(hello())
        streamed = "".join([text async for text in backend.stream_generate(hello())])
    finally:
        await backend.cleanup()
    return response.content, streamed


async def typed_call(vendor: Vendor, client: Any) -> None:
    """The SDK's own typed call for the request `hello()` makes."""
    messages = [{"role": "user", "content": "hello"}]
    if vendor is OPENAI:
        await client.chat.completions.create(model=vendor.model, messages=messages, temperature=0.3,
                                             max_completion_tokens=20)
    else:
        await client.messages.create(model=vendor.model, messages=messages, max_tokens=20,
                                     extra_body={"temperature": 0.3})


@SDK_VENDORS
@pytest.mark.parametrize(("transport", "wire"), [("aiohttp", AiohttpWire), ("httpx", SDKWire)])
async def test_the_transport_decides_the_wire(vendor: Vendor, transport: str, wire: type) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server, http_transport=transport)
        await backend.initialize()
        assert type(backend._wire) is wire  # type: ignore[attr-defined]
        content, streamed = await generate_and_stream(backend)
    assert content and streamed
    assert server.count(vendor.generate_path) == 2


@SDK_VENDORS
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_wire_sends_what_the_sdk_typed_call_sends(vendor: Vendor, transport: str) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server, http_transport=transport)
        try:
            await backend.generate(hello())
            await typed_call(vendor, backend._client)
        finally:
            await backend.cleanup()
    ours, sdks = server.requests
    assert (ours.method, ours.path, ours.body) == (sdks.method, sdks.path, sdks.body)
    assert {k: v for k, v in ours.headers.items() if k not in PER_REQUEST} == \
        {k: v for k, v in sdks.headers.items() if k not in PER_REQUEST}
    assert ours.headers["x-stainless-retry-count"] == "0"


@pytest.mark.parametrize(("vendor", "typed", "content_of"), [
    (OPENAI, openai.types.chat.ChatCompletion, lambda raw: raw.choices[0].message.content),
    (CLAUDE, anthropic.types.Message, lambda raw: raw.content[0].text),
], ids=["openai", "claude"])
async def test_raw_response_is_the_sdk_typed_answer_built_when_read(vendor: Vendor, typed: type,
                                                                    content_of: Any) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server)
        try:
            response = await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert isinstance(response.__dict__["_raw_response"], DeferredRaw)  # nothing built yet
    raw = response.raw_response
    assert isinstance(raw, typed) and response.raw_response is raw
    assert content_of(raw) == response.content
    assert "raw_response" not in repr(response)


@SDK_VENDORS
async def test_complete_streams_give_their_connection_back(vendor: Vendor) -> None:
    server = vendor.fake_cls()
    tracking = PeerTracking(server)
    async with server:
        backend = backend_for(vendor, server)
        try:
            for _ in range(3):
                assert [text async for text in backend.stream_generate(hello())]
            assert (await backend.generate(hello())).content
        finally:
            await backend.cleanup()
    assert server.count(vendor.generate_path) == 4
    assert len(tracking.peers) == 1  # one connection served all four


@SDK_VENDORS
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_value_json_cannot_carry_is_refused_before_the_network(vendor: Vendor, stream: bool) -> None:
    tool = {"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "enum": {1, 2}}}}
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMValidationError) as caught:
                if stream:
                    [event async for event in backend.stream(hello(tools=[tool]))]
                else:
                    await backend.generate(hello(tools=[tool]))
        finally:
            await backend.cleanup()
    assert caught.value.field.startswith("tools") and "cannot be sent as JSON" in str(caught.value)
    assert server.count() == 0


async def test_the_field_that_cannot_be_sent_is_named() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "pick", "schema": {"enum": {1, 2}}}}
    async with OPENAI.fake_cls() as server:
        backend = backend_for(OPENAI, server)
        try:
            with pytest.raises(LLMValidationError) as caught:
                await backend.generate(hello(extra_params={"response_format": schema}))
        finally:
            await backend.cleanup()
    assert caught.value.field == "extra_params.response_format"
    assert server.count() == 0


@pytest.mark.parametrize(("vendor", "body"), [
    (OPENAI, {"choices": "none"}), (OPENAI, ["not", "an", "object"]), (OPENAI, {"choices": [{"message": 7}]}),
    (CLAUDE, {"content": 5}), (CLAUDE, {"content": [{"type": "text", "text": "hi"}], "usage": "lots"}),
], ids=["openai-choices", "openai-array", "openai-message", "claude-content", "claude-usage"])
async def test_an_answer_of_the_wrong_shape_is_a_server_error(vendor: Vendor, body: Any) -> None:
    async with vendor.fake_cls() as server:
        server.enqueue(Reply(body=body))
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMServerError, match="malformed response") as caught:
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert caught.value.backend == vendor.name and caught.value.__cause__ is not None
    assert server.count(vendor.generate_path) == 1


@pytest.mark.parametrize(("vendor", "sdk"), [(OPENAI, openai), (CLAUDE, anthropic)], ids=["openai", "claude"])
async def test_an_sdk_whose_internals_moved_falls_back_to_the_generic_call(
    vendor: Vendor, sdk: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(sdk._models, "FinalRequestOptions")  # the SDK's own modules keep their references
    async with vendor.fake_cls() as server:
        with caplog.at_level(logging.WARNING, logger="llm.backends._wire"):
            content, streamed = await generate_and_stream(backend_for(vendor, server))
    assert content and streamed
    assert server.count(vendor.generate_path) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "llm.backends._wire"]
    assert len(warnings) == 1 and "client.post" in warnings[0]  # said once, not on every call


# -- the event-stream decoder ------------------------------------------------------------------------------------------


STREAM = (b": comment\n"
          b"event: message_start\ndata: {\"a\": 1}\n\n"
          b"data: first line\ndata: second line\n\n"
          b"event: ping\n\n"
          b"data:no-space\nid: 7\nretry: 100\n\n"
          b"data: {\"unicode\": \"\xc3\xa9\xe2\x82\xac\"}\n\n")
EVENTS = [("message_start", b'{"a": 1}'), (None, b"first line\nsecond line"), ("ping", b""), (None, b"no-space"),
          (None, b'{"unicode": "\xc3\xa9\xe2\x82\xac"}')]


def decode(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.finish()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_sse_events_are_framed_whatever_the_line_ending(newline: bytes) -> None:
    assert decode([STREAM.replace(b"\n", newline)]) == EVENTS


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_sse_events_survive_any_split_of_the_body(newline: bytes) -> None:
    body = STREAM.replace(b"\n", newline)
    for cut in range(1, len(body)):
        assert decode([body[:cut], body[cut:]]) == EVENTS, cut
    assert decode([body[i:i + 1] for i in range(len(body))]) == EVENTS


def test_an_unfinished_event_at_the_end_is_dropped() -> None:
    assert decode([b"data: done\n\ndata: cut off"]) == [(None, b"done")]
    assert decode([b"data: done\n\ndata: cut off\n"]) == [(None, b"done")]
    assert decode([b"data: done\r\r"]) == [(None, b"done")]  # "\r" ends the blank line even at the very end


@pytest.mark.parametrize(("then", "connections"), [("hang", 2), ("end", 1)], ids=["mid-answer", "body-complete"])
async def test_a_stream_closed_early_drops_its_connection_unless_the_body_was_complete(
    then: str, connections: int
) -> None:
    """An abandoned stream must not leave a half-read connection in the pool (the next call would read the rest);
    one whose body had fully arrived keeps it."""
    server = OPENAI.fake_cls()
    tracking = PeerTracking(server)
    async with server:
        server.enqueue(replace(OPENAI.dropped_stream, then=then))
        backend = backend_for(OPENAI, server)
        try:
            events = backend.stream(hello())
            await anext(events)
            await asyncio.sleep(0.05)  # the rest of the body (if any) arrives
            await events.aclose()
            assert (await backend.generate(hello())).content
        finally:
            await backend.cleanup()
    assert len(tracking.peers) == connections


@SDK_VENDORS
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_environment_proxy_carries_every_call(vendor: Vendor, transport: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, calls go to the proxy (here the fake itself, which answers absolute-form requests), as
    the SDK's would: a host that does not resolve is reached only through it."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with vendor.fake_cls() as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        unreachable = vendor.base_url(server).replace(server.url.removeprefix("http://"), "llm-vendor.invalid")
        backend = vendor.backend_cls(vendor.config(server, base_url=unreachable),  # type: ignore[call-arg]
                                     http_transport=transport)
        assert await backend.health_check()  # the SDK's own call (the models list) takes the proxy too
        content, streamed = await generate_and_stream(backend)
    assert content and streamed
    assert server.count(vendor.generate_path) == 2
