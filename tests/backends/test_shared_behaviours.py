"""One table of behaviours, run for every vendor (tests/fakes/vendors.py) and for generate and stream alike.

Each test drives the real vendor SDK through our adapter against the vendor's fake server on 127.0.0.1, and asserts
what came back (content, usage, finish reason, tool calls, exact error class) and how many requests the server saw.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from llm.base import LLMBackend, LLMRequest, LLMResponse, ResponseDone, TextDelta
from llm.errors import (
    LLMAuthenticationError,
    LLMBackendError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMContextLengthError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)
from tests.fakes.server import FakeServer, Hang, Reply, StreamReply
from tests.fakes.vendor import Expected, Vendor
from tests.fakes.vendors import VENDORS, WIRE_VARIANTS
from tests.manager.helpers import wait_closed

STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])


@pytest.fixture(params=VENDORS + WIRE_VARIANTS, ids=[v.label for v in VENDORS + WIRE_VARIANTS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param  # type: ignore[no-any-return]


def hello(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello there"}], max_tokens=50, **kwargs)


async def call(backend: LLMBackend, request: LLMRequest, stream: bool) -> LLMResponse:
    """generate(), or stream() collected: the text deltas must add up to the final response's content."""
    if not stream:
        return await backend.generate(request)
    texts: list[str] = []
    final: LLMResponse | None = None
    async for event in backend.stream(request):
        assert final is None, "nothing may follow ResponseDone"
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, ResponseDone):
            final = event.response
    assert final is not None, "a stream must end with ResponseDone"
    assert "".join(texts) == final.content
    return final


def generation_requests(vendor: Vendor, server: FakeServer) -> int:
    return server.count(vendor.generate_path)


def assert_matches(response: LLMResponse, expected: Expected, vendor: Vendor) -> None:
    assert response.content == expected.content
    assert response.usage == expected.usage
    assert response.finish_reason == expected.finish_reason
    assert response.metadata["finish_reason"] == expected.finish_reason
    assert response.backend_type == vendor.backend_type.value
    if expected.model is not None:
        assert response.model == expected.model
    assert [(call.name, call.arguments) for call in response.tool_calls] == expected.tool_calls
    assert all(call.id for call in response.tool_calls)


# -- answers -------------------------------------------------------------------------------------------------------


@STREAM
async def test_default_answer_echoes_the_prompt(vendor: Vendor, server: FakeServer, backend: LLMBackend,
                                                stream: bool) -> None:
    response = await call(backend, hello(temperature=0), stream)
    assert "hello there" in response.content
    assert response.finish_reason == "stop"
    assert response.usage["total_tokens"] == response.usage["prompt_tokens"] + response.usage["completion_tokens"] > 0
    assert response.model
    assert response.response_time > 0
    assert generation_requests(vendor, server) == 1


@STREAM
async def test_recorded_text_answer(vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    reply, expected = vendor.text_stream if stream else vendor.text_sync
    server.enqueue(reply)
    assert_matches(await call(backend, hello(), stream), expected, vendor)


@STREAM
async def test_recorded_tool_calls(vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    recording = vendor.tools_stream if stream else vendor.tools_sync
    if recording is None:
        pytest.skip(f"no real {vendor.name} tool-call recording exists")
    reply, expected = recording
    server.enqueue(reply)
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
             for name, _ in expected.tool_calls]
    response = await call(backend, hello(tools=tools), stream)
    assert_matches(response, expected, vendor)
    assert response.to_assistant_message()["tool_calls"][0]["function"]["name"] == expected.tool_calls[0][0]


@STREAM
async def test_model_override_is_sent(vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    await call(backend, hello(extra_params={"model_name_override": "other-model"}), stream)
    recorded = server.requests[-1]
    in_body = isinstance(recorded.body, dict) and recorded.body.get("model") == "other-model"
    assert "other-model" in recorded.path or in_body


# -- HTTP errors ---------------------------------------------------------------------------------------------------

STATUS_ERRORS = [
    (400, LLMBadRequestError),
    (401, LLMAuthenticationError),
    (403, LLMAuthenticationError),
    (404, LLMNotFoundError),
    (408, LLMTimeoutError),
    (413, LLMContextLengthError),
    (422, LLMBadRequestError),
    (429, LLMRateLimitError),
    (500, LLMServerError),
    (502, LLMServerError),
    (503, LLMServerError),
    (504, LLMServerError),
    (529, LLMServerError),
]


@STREAM
@pytest.mark.parametrize(("status", "error_class"), STATUS_ERRORS, ids=[str(s) for s, _ in STATUS_ERRORS])
async def test_http_status_maps_to_typed_error_after_one_request(
    vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool, status: int,
    error_class: type[LLMBackendError],
) -> None:
    server.enqueue(vendor.error_reply(status, {}))
    with pytest.raises(LLMBackendError) as caught:
        await call(backend, hello(), stream)
    error = caught.value
    assert type(error) is error_class, f"{status} gave {type(error).__name__}: {error}"
    assert error.status_code == status
    assert error.backend == vendor.name
    assert error.__cause__ is not None, "the SDK exception must be chained"
    assert error.retryable == (status in (408, 429) or status >= 500)
    assert generation_requests(vendor, server) == 1, "no hidden SDK retry"
    if vendor.stainless:
        assert server.requests[-1].headers["x-stainless-retry-count"] == "0"


@STREAM
@pytest.mark.parametrize(("headers", "seconds"), [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5),
                                                  ({"retry-after": "soon"}, None)])
async def test_rate_limit_carries_retry_after(vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool,
                                              headers: dict[str, str], seconds: float | None) -> None:
    server.enqueue(vendor.error_reply(429, headers))
    with pytest.raises(LLMRateLimitError) as caught:
        await call(backend, hello(), stream)
    assert caught.value.retry_after == seconds
    assert caught.value.retryable
    assert generation_requests(vendor, server) == 1


@STREAM
async def test_exhausted_quota_is_not_a_rate_limit(vendor: Vendor, server: FakeServer, backend: LLMBackend,
                                                   stream: bool) -> None:
    if vendor.quota_reply is None:
        pytest.skip(f"{vendor.name} has no distinct quota error")
    server.enqueue(vendor.quota_reply)
    with pytest.raises(LLMQuotaExceededError) as caught:
        await call(backend, hello(), stream)
    assert not caught.value.retryable
    assert caught.value.status_code == 429
    assert generation_requests(vendor, server) == 1


# -- transport failures --------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Closed:
    url = f"http://127.0.0.1:{closed_port()}"
    base_url = url


@STREAM
async def test_connection_refused(vendor: Vendor, stream: bool) -> None:
    backend = vendor.backend(_Closed())
    try:
        with pytest.raises(LLMConnectionError) as caught:
            await call(backend, hello(), stream)
    finally:
        await backend.cleanup()
    assert caught.value.backend == vendor.name
    assert caught.value.retryable
    assert caught.value.__cause__ is not None


@STREAM
async def test_server_that_never_answers_times_out(vendor: Vendor, server: FakeServer, stream: bool) -> None:
    backend = vendor.backend(server, timeout=0.5)
    server.enqueue(Hang())
    start = time.monotonic()
    try:
        with pytest.raises(LLMTimeoutError):
            await call(backend, hello(), stream)
    finally:
        await backend.cleanup()
    assert time.monotonic() - start < 3.0
    assert generation_requests(vendor, server) == 1


async def test_stream_error_after_text_keeps_the_partial_text(vendor: Vendor, server: FakeServer,
                                                              backend: LLMBackend) -> None:
    reply, partial = vendor.midstream_error
    server.enqueue(reply)
    with pytest.raises(LLMStreamError) as caught:
        await call(backend, hello(), True)
    assert caught.value.partial_content == partial
    assert caught.value.backend == vendor.name
    assert not caught.value.retryable
    assert generation_requests(vendor, server) == 1


@pytest.mark.parametrize("fault", ["malformed_chunk", "dropped_stream"])
async def test_broken_stream_is_a_typed_error(vendor: Vendor, server: FakeServer, backend: LLMBackend,
                                              fault: str) -> None:
    reply: StreamReply = getattr(vendor, fault)
    server.enqueue(reply)
    with pytest.raises(LLMStreamError) as caught:
        await call(backend, hello(), True)
    assert caught.value.partial_content.startswith("Hello")
    assert caught.value.__cause__ is not None


async def test_empty_stream_is_a_typed_error(vendor: Vendor, server: FakeServer, backend: LLMBackend) -> None:
    server.enqueue(StreamReply([], content_type="text/event-stream"))
    with pytest.raises(LLMBackendError) as caught:
        await call(backend, hello(), True)
    assert not isinstance(caught.value, LLMStreamError), "nothing was streamed, so the failure is retryable"
    assert caught.value.retryable


async def test_breaking_out_of_a_stream_closes_it(vendor: Vendor, server: FakeServer, backend: LLMBackend) -> None:
    """A stream abandoned mid-answer (the server would stay silent forever) closes its HTTP connection at once."""
    text_then_silence = StreamReply(list(vendor.midstream_error[0].chunks)[:-1], then="hang",
                                    content_type=vendor.midstream_error[0].content_type)
    server.enqueue(text_then_silence)
    events = backend.stream(hello())
    async for event in events:
        if isinstance(event, TextDelta):
            break
    await events.aclose()
    assert await wait_closed(server, timeout=1.0) < 1.0
    assert "hello there" in (await backend.generate(hello())).content, "the client still works afterwards"


# -- validation, secrets, health -----------------------------------------------------------------------------------

INVALID = [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "bad \udcff bytes"}]}, "messages[0].content"),
    ({"temperature": 5.0}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"extra_params": {"top_p": 1.5}}, "extra_params.top_p"),
    ({"extra_params": {"temprature": 0.2}}, "extra_params"),
    ({"tool_choice": "required"}, "tool_choice"),
]


@STREAM
@pytest.mark.parametrize(("fields", "field_name"), INVALID, ids=[name for _, name in INVALID])
async def test_invalid_request_is_rejected_before_the_network(
    vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool, fields: dict[str, Any], field_name: str,
) -> None:
    values: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(LLMValidationError) as caught:
        await call(backend, LLMRequest(**values), stream)
    assert caught.value.field == field_name
    assert isinstance(caught.value, ValueError)
    assert server.requests == []


async def test_temperature_range_is_the_vendors(vendor: Vendor, server: FakeServer, backend: LLMBackend) -> None:
    low, high = type(backend).temperature_range
    with pytest.raises(LLMValidationError):
        await backend.generate(hello(temperature=high + 0.01))
    response = await backend.generate(hello(temperature=high))
    assert response.content
    assert generation_requests(vendor, server) == 1


async def test_api_key_never_leaks(vendor: Vendor, server: FakeServer) -> None:
    canary = "sk-canary-" + "9" * 24
    backend = vendor.backend(server, api_key=canary)
    try:
        assert canary not in repr(backend) and canary not in repr(backend.config)
        server.enqueue(vendor.error_reply(401, {}))
        with pytest.raises(LLMAuthenticationError) as caught:
            await backend.generate(hello())
        assert canary not in str(caught.value) and canary not in repr(caught.value)
    finally:
        await backend.cleanup()
    for recorded in server.requests:
        assert canary not in recorded.path and canary not in str(recorded.query), "keys travel in headers only"


async def test_health_check_lists_models_and_never_generates(vendor: Vendor, server: FakeServer,
                                                             backend: LLMBackend) -> None:
    assert await backend.health_check()
    assert generation_requests(vendor, server) == 0
    assert len(server.requests) == 1
    assert backend.get_available_models()


async def test_health_check_reports_a_dead_server(vendor: Vendor) -> None:
    backend = vendor.backend(_Closed())
    try:
        assert not await backend.health_check()
    finally:
        await backend.cleanup()


async def test_server_reply_for_unknown_path_is_typed(vendor: Vendor, server: FakeServer, backend: LLMBackend) -> None:
    server.enqueue(Reply(status=500, body="<html>upstream exploded</html>", content_type="text/html"))
    with pytest.raises(LLMServerError) as caught:
        await backend.generate(hello())
    assert caught.value.status_code == 500
