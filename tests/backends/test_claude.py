"""Claude-specific behaviour: the Messages API request the real SDK puts on the wire, tool translation both ways,
Anthropic's error cases (recorded bodies included) and the fake's own validation.

The generic behaviours (status table, timeouts, broken streams, validation) run for Claude in
tests/backends/test_shared_behaviours.py through `tests.fakes.claude_fake.VENDOR`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from llm import errors
from llm.backends.claude import DEFAULT_BASE_URL, ClaudeBackend, map_finish_reason
from llm.base import LLMConfig, LLMRequest, LLMResponse, ResponseDone, TextDelta, ToolCallDelta
from tests.fakes.claude_fake import (
    API_KEY,
    CLAUDE_DETAILS,
    MIDSTREAM_ERROR_FRAME,
    VENDOR,
    FakeClaude,
    claude_sse,
    error_reply,
    text_events,
)
from tests.fakes.recordings import KEPT_HEADERS, interaction_request, read_json, replay, split_stream
from tests.fakes.server import Reply, StreamReply

STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
TOOLS_SYNC = "anthropic/mirascope__test_call_with_tools_anthropic_claude_sonnet_4_0_sync.yaml"
TOOLS_STREAM = "anthropic/mirascope__test_call_with_tools_anthropic_claude_sonnet_4_0_stream.yaml"
MESSAGES_PATH = "/v1/messages"


@pytest.fixture
async def server() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@pytest.fixture
async def backend(server: FakeClaude) -> AsyncIterator[ClaudeBackend]:
    instance = ClaudeBackend(VENDOR.config(server))
    yield instance
    await instance.cleanup()


async def call(backend: ClaudeBackend, request: LLMRequest, stream: bool) -> LLMResponse:
    """generate(), or stream() collected; the streamed text must add up to the final content."""
    if not stream:
        return await backend.generate(request)
    texts: list[str] = []
    final: LLMResponse | None = None
    async for event in backend.stream(request):
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, ResponseDone):
            final = event.response
    assert final is not None
    assert "".join(texts) == final.content
    return final


def hello(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello there"}], max_tokens=50, **kwargs)


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _call(call_id: str, city: str) -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}
    return {"id": call_id, "type": "function", "function": function}


# -- the request on the wire ---------------------------------------------------------------------------------------


@STREAM
async def test_full_request_body_in_messages_api_format(server: FakeClaude, backend: ClaudeBackend,
                                                        stream: bool) -> None:
    request = LLMRequest(
        system_prompt="You are terse.",
        messages=[
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": "Checking both.",
             "tool_calls": [_call("toolu_a", "Paris"), _call("toolu_b", "Oslo")]},
            {"role": "tool", "tool_call_id": "toolu_a", "content": "18C sunny"},
            {"role": "tool", "tool_call_id": "toolu_b", "content": "3C snow"},
            {"role": "system", "content": "Cite the source."},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare with these pictures."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/oslo.jpg"}},
            ]},
        ],
        temperature=0.2, max_tokens=300, tools=[WEATHER_TOOL], tool_choice="auto",
        extra_params={"top_p": 0.9, "top_k": 40, "stop": "END", "user": "user-123"},
    )
    response = await call(backend, request, stream)
    assert response.content == "echo: Compare with these pictures."
    expected: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 300,
        "system": "You are terse.\n\nAnswer in English.\n\nCite the source.",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "3C snow"},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare with these pictures."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/oslo.jpg"}},
            ]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": WEATHER_TOOL["function"]["parameters"]}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-123"},
    }
    if stream:
        expected["stream"] = True
    (recorded,) = server.requests
    assert recorded.body == expected
    assert recorded.headers["anthropic-version"]
    assert recorded.headers["x-stainless-retry-count"] == "0"


def _without(value: Any, keys: frozenset[str] = frozenset({"cache_control", "citations"})) -> Any:
    """A recorded body without the fields the recording client added that we do not send."""
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


@STREAM
async def test_recorded_tool_round_trip_sends_the_history_the_recording_sent(
    server: FakeClaude, backend: ClaudeBackend, stream: bool,
) -> None:
    cassette = TOOLS_STREAM if stream else TOOLS_SYNC
    recorded_first, recorded_second = interaction_request(cassette, 0), interaction_request(cassette, 1)
    tool = recorded_first["tools"][0]
    tools = [{"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                               "parameters": _without(tool["input_schema"])}}]
    history: list[dict[str, Any]] = [{"role": "user", "content": recorded_first["messages"][0]["content"]}]
    server.enqueue(replay(cassette, 0), replay(cassette, 1))

    first = await call(backend, LLMRequest(messages=history, tools=tools), stream)
    assert first.finish_reason == "tool_calls"
    secrets = {"mellon": "Welcome to Moria!", "radiance": "Life before Death"}
    history = [*history, first.to_assistant_message(),
               *({"role": "tool", "tool_call_id": c.id, "content": secrets[c.arguments["password"]]}
                 for c in first.tool_calls)]
    second = await call(backend, LLMRequest(messages=history, tools=tools), stream)

    sent = server.requests[-1].body
    assert sent["messages"] == _without(recorded_second["messages"])
    assert sent["tools"] == _without(recorded_second["tools"])
    assert second.finish_reason == "stop"
    assert "Welcome to Moria!" in second.content and "Life before Death" in second.content
    assert second.usage["prompt_tokens"] == 602


TOOL_CHOICES = [
    ("auto", {"type": "auto"}, False),
    ("none", {"type": "none"}, False),
    ("required", {"type": "any"}, True),
    ("any", {"type": "any"}, True),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}, True),
]


@STREAM
@pytest.mark.parametrize(("choice", "wire", "forced"), TOOL_CHOICES, ids=["auto", "none", "required", "any", "named"])
async def test_tool_choice_translation(server: FakeClaude, backend: ClaudeBackend, stream: bool, choice: Any,
                                       wire: dict[str, str], forced: bool) -> None:
    response = await call(backend, hello(tools=[WEATHER_TOOL], tool_choice=choice), stream)
    assert server.requests[-1].body["tool_choice"] == wire
    if forced:  # the fake answers a forced choice with a tool_use block, streamed as input_json_delta fragments
        assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
            ("toolu_fake01", "get_weather", {"query": "hello there"})]
        assert response.finish_reason == "tool_calls"
    else:
        assert response.tool_calls == [] and response.finish_reason == "stop"


async def test_streamed_tool_call_arrives_as_deltas(server: FakeClaude, backend: ClaudeBackend) -> None:
    events = [e async for e in backend.stream(hello(tools=[WEATHER_TOOL], tool_choice="required"))]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "toolu_fake01" and deltas[0].name == "get_weather"
    assert "".join(d.arguments for d in deltas) == '{"query": "hello there"}'
    assert len(deltas) > 2


UNSUPPORTED = [({key: 1}, f"extra_params.{key}") for key in ("seed", "frequency_penalty", "presence_penalty",
                                                             "response_format")]


@pytest.mark.parametrize(("extra", "field"), [
    *UNSUPPORTED, ({"top_k": 0}, "extra_params.top_k"), ({"stop": [""]}, "extra_params.stop"),
    ({"stop": 3}, "extra_params.stop"),
])
async def test_extras_anthropic_lacks_or_bad_values_are_rejected_before_the_call(
    server: FakeClaude, backend: ClaudeBackend, extra: dict[str, Any], field: str,
) -> None:
    with pytest.raises(errors.LLMValidationError) as caught:
        await backend.generate(hello(extra_params=extra))
    assert caught.value.field == field
    assert server.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/bmp;base64,Qk0=", "data:image/png,raw"])
async def test_images_anthropic_cannot_take_are_rejected(server: FakeClaude, backend: ClaudeBackend, url: str) -> None:
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(errors.LLMValidationError) as caught:
        await backend.generate(LLMRequest(messages=[{"role": "user", "content": content}], system_prompt="Be brief."))
    assert caught.value.field == "messages[0].content[1]"
    assert server.requests == []


# -- the answer ----------------------------------------------------------------------------------------------------


@STREAM
async def test_model_actually_used_comes_from_the_response(server: FakeClaude, backend: ClaudeBackend,
                                                           stream: bool) -> None:
    response = await call(backend, hello(temperature=0), stream)
    assert server.requests[-1].body["model"] == "claude-haiku-4-5"
    assert server.requests[-1].body["temperature"] == 0  # an explicit 0 is honoured, not replaced by the default
    assert response.model == "claude-haiku-4-5-20251001"


@STREAM
@pytest.mark.parametrize(("extra", "content", "finish", "stop_reason", "stop_sequence"), [
    ({"max_tokens": 2}, "echo: hello", "length", "max_tokens", None),
    ({"extra_params": {"stop": ["there"]}}, "echo: hello ", "stop", "stop_sequence", "there"),
])
async def test_stop_reasons(server: FakeClaude, backend: ClaudeBackend, stream: bool, extra: dict[str, Any],
                            content: str, finish: str, stop_reason: str, stop_sequence: str | None) -> None:
    response = await call(backend, LLMRequest(messages=[{"role": "user", "content": "hello there"}], **extra), stream)
    assert response.content == content
    assert response.finish_reason == finish
    assert response.metadata["stop_reason"] == stop_reason
    assert response.metadata["stop_sequence"] == stop_sequence


def test_finish_reason_table() -> None:
    assert [map_finish_reason(r) for r in ("end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal",
                                           "model_context_window_exceeded", "something_new", None)] == [
        "stop", "stop", "length", "tool_calls", "content_filter", "length", "stop", None]


@pytest.mark.parametrize(("cassette", "stream", "request_id"), [
    ("anthropic/mirascope__test_call_anthropic_claude_sonnet_4_0_sync.yaml", False, "req_011CWF2CNoHfDY1Jfot98FQo"),
    ("anthropic/llm_anthropic__test_stream_events_text.yaml", True, "req_011CZknL2bUdgvrtea9HYSrj"),
])
async def test_request_id_from_the_response_header(server: FakeClaude, backend: ClaudeBackend, cassette: str,
                                                   stream: bool, request_id: str) -> None:
    server.enqueue(replay(cassette))
    response = await call(backend, hello(), stream)
    assert response.metadata["request_id"] == request_id
    assert response.metadata["id"].startswith("msg_")


async def test_prompt_tokens_include_cache_reads_and_writes(server: FakeClaude, backend: ClaudeBackend) -> None:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 20, "output_tokens": 7}
    server.enqueue(Reply(body={"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                               "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}))
    response = await backend.generate(hello())
    assert response.usage == {"prompt_tokens": 125, "completion_tokens": 7, "total_tokens": 132, "cached_tokens": 20,
                              "cache_creation_tokens": 100}


async def test_thinking_blocks_and_unknown_events_are_skipped(server: FakeClaude, backend: ClaudeBackend) -> None:
    events = [
        {"type": "content_block_start", "index": 1, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "some_future_event", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    server.enqueue(StreamReply([*text_events("Hi"), *claude_sse(events)]))
    response = await call(backend, hello(), True)
    assert response.content == "Hi"
    assert response.usage == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, **CLAUDE_DETAILS}
    assert "_message_stop" not in response.metadata


async def test_tool_blocks_repeating_one_id_are_one_call(server: FakeClaude, backend: ClaudeBackend) -> None:
    """A proxy that streams one tool call as several `tool_use` blocks with the same id (LiteLLM's did, 9 of them)
    gives one call with the arguments joined; a block with another id is another call."""
    fragments = ['{"ci', 'ty": "Pa', 'ris"}']
    events: list[dict[str, Any]] = []
    for index, fragment in enumerate(fragments, start=1):
        events += [
            {"type": "content_block_start", "index": index,
             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "input_json_delta", "partial_json": fragment}},
            {"type": "content_block_stop", "index": index},
        ]
    events += [
        {"type": "content_block_start", "index": 4,
         "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}},
        {"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    server.enqueue(StreamReply([*text_events("Checking."), *claude_sse(events)]))
    response = await call(backend, hello(), True)
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("toolu_1", "get_weather", {"city": "Paris"}), ("toolu_2", "get_time", {})]
    assert response.finish_reason == "tool_calls"
    assert not [key for key in response.metadata if key.startswith("_")]


# -- Anthropic's errors --------------------------------------------------------------------------------------------


@STREAM
@pytest.mark.parametrize(("cassette", "error_class", "status", "request_id", "text"), [
    ("mirascope__test_authentication_error_anthropic_claude_sonnet_4_0.yaml", errors.LLMAuthenticationError, 401,
     "req_011CWdMEehrhsdujMyQ9pChP", "invalid x-api-key"),
    ("mirascope__test_model_not_found_anthropic_claude_sonnet_4_0.yaml", errors.LLMNotFoundError, 404,
     "req_011CWbzicpaYMyAiiXobLkzi", "model: this-model-does-not-exist-12345"),
    ("ddtrace__anthropic_completion_error.yaml", errors.LLMBadRequestError, 400, "req_01BjwuzUpsYgKjQJguJyvKb3",
     "messages.0: Input does not match the expected shape."),
])
async def test_recorded_error_bodies(server: FakeClaude, backend: ClaudeBackend, stream: bool, cassette: str,
                                     error_class: type[errors.LLMBackendError], status: int, request_id: str,
                                     text: str) -> None:
    server.enqueue(replay(f"anthropic/{cassette}"))
    with pytest.raises(errors.LLMBackendError) as caught:
        await call(backend, hello(), stream)
    error = caught.value
    assert type(error) is error_class
    assert (error.status_code, error.request_id, error.message) == (status, request_id, text)
    assert error.backend == "claude" and not error.retryable  # x-should-retry: false, and 4xx anyway
    assert server.count(MESSAGES_PATH) == 1
    assert server.requests[-1].headers["x-stainless-retry-count"] == "0"


async def test_wrong_key_is_refused_by_the_fake(server: FakeClaude) -> None:
    backend = ClaudeBackend(VENDOR.config(server, api_key="sk-ant-wrong"))
    try:
        with pytest.raises(errors.LLMAuthenticationError) as caught:
            await backend.generate(hello())
        assert not await backend.health_check()
    finally:
        await backend.cleanup()
    assert caught.value.message == "invalid x-api-key"
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_fake")


def _sdk_snapshot_replies() -> tuple[Reply, StreamReply]:
    """The SDK's own snapshot: a 429 (x-should-retry: true), then (after the SDK's retry) a 200 stream."""
    first, _, last = read_json("anthropic/anthropic_sdk__rate_limit_429_then_stream.json")
    headers = {k: v for k, v in first["response"]["headers"].items() if k in KEPT_HEADERS}
    limited = Reply(status=first["response"]["status_code"], body=first["response"]["body"], headers=headers)
    return limited, StreamReply(split_stream(last["response"]["body"].encode()))


async def test_sdk_snapshot_429_reaches_the_caller_after_one_request_then_the_stream_works(
    server: FakeClaude, backend: ClaudeBackend,
) -> None:
    server.enqueue(*_sdk_snapshot_replies())
    with pytest.raises(errors.LLMRateLimitError) as caught:
        await call(backend, hello(), True)
    assert type(caught.value) is errors.LLMRateLimitError and caught.value.retryable
    assert caught.value.status_code == 429
    assert caught.value.request_id == "req_011CYK5n67SytMUxm8WMZUWY"  # no header in the snapshot: from the body
    assert server.count(MESSAGES_PATH) == 1
    assert server.requests[-1].headers["x-stainless-retry-count"] == "0"

    response = await call(backend, hello(), True)
    assert response.content == "[12345,67890]"
    assert response.usage == {"prompt_tokens": 135, "completion_tokens": 10, "total_tokens": 145, **CLAUDE_DETAILS}
    assert response.model == "claude-sonnet-4-5-20250929"
    assert server.count(MESSAGES_PATH) == 2


async def test_event_error_is_an_overload_before_text_and_a_stream_error_after(server: FakeClaude,
                                                                               backend: ClaudeBackend) -> None:
    server.enqueue(StreamReply([*text_events(), MIDSTREAM_ERROR_FRAME]),
                   StreamReply([*text_events("Hello", " wor"), MIDSTREAM_ERROR_FRAME]))
    with pytest.raises(errors.LLMServerError) as before:
        await call(backend, hello(), True)
    assert type(before.value) is errors.LLMServerError and before.value.message == "Overloaded"
    assert before.value.status_code == 529 and before.value.retryable  # CODE_STATUS: overloaded_error -> 529
    chunks: list[str] = []
    with pytest.raises(errors.LLMStreamError) as after:
        async for chunk in backend.stream_generate(hello()):
            chunks.append(chunk)
    assert chunks == ["Hello", " wor"] and after.value.partial_content == "Hello wor"
    assert after.value.status_code == 529 and not after.value.retryable


async def test_stream_ending_without_message_stop(server: FakeClaude, backend: ClaudeBackend) -> None:
    server.enqueue(StreamReply(text_events("Hello")), StreamReply(text_events()))
    with pytest.raises(errors.LLMStreamError) as caught:
        await call(backend, hello(), True)
    assert caught.value.partial_content == "Hello"
    assert isinstance(caught.value.__cause__, errors.LLMConnectionError)
    with pytest.raises(errors.LLMConnectionError) as nothing_yet:
        await call(backend, hello(), True)
    assert nothing_yet.value.retryable


@STREAM
@pytest.mark.parametrize(("status", "message", "headers", "error_class", "retryable"), [
    (400, "prompt is too long: 215000 tokens > 200000 maximum", {}, errors.LLMContextLengthError, False),
    (400, "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
          "purchase credits.", {}, errors.LLMQuotaExceededError, False),
    (529, "Overloaded", {}, errors.LLMServerError, True),
    (503, "Service unavailable", {"x-should-retry": "false"}, errors.LLMServerError, False),
], ids=["context-length", "credit-balance", "overloaded", "x-should-retry-false"])
async def test_anthropic_error_cases(server: FakeClaude, backend: ClaudeBackend, stream: bool, status: int,
                                     message: str, headers: dict[str, str], error_class: type[errors.LLMBackendError],
                                     retryable: bool) -> None:
    reply = error_reply(status, headers)
    reply.body["error"]["message"] = message
    server.enqueue(reply)
    with pytest.raises(errors.LLMBackendError) as caught:
        await call(backend, hello(), stream)
    assert type(caught.value) is error_class
    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)
    assert server.count(MESSAGES_PATH) == 1


# -- client set-up, health -----------------------------------------------------------------------------------------


async def test_health_check_only_lists_models(server: FakeClaude, backend: ClaudeBackend) -> None:
    assert await backend.health_check()
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/models")]
    assert backend.get_available_models() == ["claude-haiku-4-5-20251001", "claude-sonnet-4-6", "claude-opus-4-6"]


async def test_missing_key_is_a_config_error_naming_the_variable(server: FakeClaude) -> None:
    backend = ClaudeBackend(VENDOR.config(server, api_key=None))
    with pytest.raises(errors.LLMConfigError, match="SCOUT_ANTHROPIC_API_KEY"):
        await backend.generate(hello())
    assert server.requests == []


async def test_client_ignores_base_url_and_retries_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://attacker.invalid")
    backend = ClaudeBackend(LLMConfig(backend_type="claude", model_name=VENDOR.model, api_key=API_KEY, timeout=5))
    try:
        await backend.initialize()
        assert str(backend._client.base_url).rstrip("/") == DEFAULT_BASE_URL
        assert backend._client.max_retries == 0
        assert backend._client.timeout.read == 5 and backend._client.timeout.connect == 5
    finally:
        await backend.cleanup()


def test_importing_the_adapter_loads_no_sdk() -> None:
    code = "import sys, llm.backends.claude; assert 'anthropic' not in sys.modules and 'httpx2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# -- the fake validates like the real API --------------------------------------------------------------------------

GOOD = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}]}
FAKE_REJECTS = [
    ({"x-api-key": "nope", "anthropic-version": "2023-06-01"}, GOOD, 401, "authentication_error", "invalid x-api-key"),
    ({"x-api-key": API_KEY}, GOOD, 400, "invalid_request_error", "anthropic-version: header is required"),
    (HEADERS, {k: v for k, v in GOOD.items() if k != "max_tokens"}, 400, "invalid_request_error",
     "max_tokens: Field required"),
    (HEADERS, {k: v for k, v in GOOD.items() if k != "model"}, 400, "invalid_request_error", "model: Field required"),
    (HEADERS, {**GOOD, "temperature": 1.5}, 400, "invalid_request_error",
     "temperature: Input should be less than or equal to 1"),
    (HEADERS, {**GOOD, "messages": [{"role": "tool", "content": "x"}]}, 400, "invalid_request_error",
     "messages.0.role: Input should be 'user' or 'assistant'"),
    (HEADERS, {**GOOD, "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error",
     'messages: Unexpected role "system"'),
    (HEADERS, {**GOOD, "messages": [{"role": "user", "content": "hi"}, TOOL_USE, {"role": "user", "content": "go"}]},
     400, "invalid_request_error",
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_x."),
    (HEADERS, {**GOOD, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_y", "content": "r"}]}]}, 400, "invalid_request_error",
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_y."),
    (HEADERS, {**GOOD, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, 400,
     "invalid_request_error", "messages: text content blocks must be non-empty"),
]


@pytest.mark.parametrize(("headers", "body", "status", "kind", "message"), FAKE_REJECTS, ids=[
    "key", "version", "max_tokens", "model", "temperature", "role", "system-role", "unanswered-tool-use",
    "orphan-tool-result", "empty-text"])
async def test_fake_rejects_what_the_api_rejects(server: FakeClaude, headers: dict[str, str], body: dict[str, Any],
                                                 status: int, kind: str, message: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        server.url + MESSAGES_PATH, json=body, headers=headers
    ) as response:
        payload = await response.json()
        assert response.status == status
        assert response.headers["request-id"] == payload["request_id"]
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert payload["error"]["message"].startswith(message)
