"""Ollama-specific behaviour, through the real `ollama` client against tests/fakes/ollama_fake.py.

The generic table (tests/backends/test_shared_behaviours.py) covers what every vendor shares; this file covers the
translation to Ollama's wire format, what Ollama cannot do, and the client's own error types.
"""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import pytest

from llm.backends.ollama import OllamaBackend
from llm.base import (
    LLMBackendType,
    LLMConfig,
    LLMRequest,
    ResponseDone,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from llm.errors import (
    LLMAuthenticationError,
    LLMConnectionError,
    LLMNotFoundError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)
from tests.fakes.ollama_fake import (
    NDJSON,
    FakeOllama,
    chat_line,
    chat_reply,
    chat_stream,
    ndjson,
    tool_call,
)
from tests.fakes.recordings import interaction_body, interaction_request, read_json, replay
from tests.fakes.server import Hang, Reply, StreamReply

STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def config(url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {"backend_type": LLMBackendType.OLLAMA, "model_name": "llama3.2", "base_url": url,
                              "timeout": 2}
    return LLMConfig(**{**values, **overrides})


@pytest.fixture
async def server() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama(missing_models={"not-pulled"})
    async with fake:
        yield fake


@pytest.fixture
async def backend(server: FakeOllama) -> AsyncIterator[OllamaBackend]:
    instance = OllamaBackend(config(server.url))
    yield instance
    await instance.cleanup()


def ask(text: str = "hello there", **kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": text}], **kwargs)


async def events_of(backend: OllamaBackend, request: LLMRequest) -> list[StreamEvent]:
    return [event async for event in backend.stream(request)]


async def answer(backend: OllamaBackend, request: LLMRequest, stream: bool) -> Any:
    if not stream:
        return await backend.generate(request)
    final = (await events_of(backend, request))[-1]
    assert isinstance(final, ResponseDone)
    return final.response


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- the request on the wire ---------------------------------------------------------------------------------------

FULL_CONVERSATION = LLMRequest(
    system_prompt="Be brief.",
    messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "text", "text": "And where?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "assistant", "content": "Il fait beau."},
        {"role": "user", "content": "thanks"},
    ],
    tools=[WEATHER_TOOL, TIME_TOOL],
    temperature=0,
    max_tokens=64,
    extra_params={"top_p": 0.5, "top_k": 20, "stop": "END", "seed": 1, "frequency_penalty": 0.1,
                  "presence_penalty": 0.2, "response_format": {"type": "json_object"}},
)


@STREAM
async def test_full_conversation_is_sent_in_ollamas_format(server: FakeOllama, backend: OllamaBackend,
                                                           stream: bool) -> None:
    response = await answer(backend, FULL_CONVERSATION, stream)
    assert response.content == "thanks"  # asked for JSON (format), the fake answers the last user text verbatim
    assert server.requests[-1].path == "/api/chat"
    assert server.requests[-1].body == {
        "model": "llama3.2",
        "stream": stream,
        "options": {"temperature": 0, "num_predict": 64, "top_p": 0.5, "top_k": 20, "stop": ["END"], "seed": 1,
                    "frequency_penalty": 0.1, "presence_penalty": 0.2},
        "format": "json",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is this?\nAnd where?", "images": [PNG]},
            # The client leaves out empty content; arguments travel as objects, and calls carry no ids.
            {"role": "assistant", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {}}}]},
            {"role": "tool", "content": "12:00", "tool_name": "get_time"},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            {"role": "assistant", "content": "Il fait beau."},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [WEATHER_TOOL, TIME_TOOL],
    }


async def test_tool_history_has_the_recorded_request_shape(server: FakeOllama, backend: OllamaBackend) -> None:
    cassette = "ollama/openllmetry__test_ollama_chat_tool_calls_legacy.yaml"
    recorded = interaction_request(cassette)["messages"]
    server.enqueue(replay(cassette))
    response = await backend.generate(LLMRequest(messages=[
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0", "type": "function", "function": {
            "name": "get_current_weather", "arguments": '{"location": "San Francisco"}'}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "The weather in San Francisco is 70 degrees and sunny."},
    ]))
    sent = server.requests[-1].body["messages"]
    assert sent[0]["tool_calls"] == recorded[0]["tool_calls"]
    # The 0.3 client of the recording sent no tool_name; current Ollama uses it to match the result to its call.
    assert sent[1] == {**recorded[1], "tool_name": "get_current_weather"}
    recorded_answer = interaction_body(cassette).decode()
    assert response.content and response.content in recorded_answer.replace("\\n", "\n")
    assert response.model == "llama3.1"
    assert response.usage == {"prompt_tokens": 44, "completion_tokens": 113, "total_tokens": 157}


TOOL_CHOICES = [
    (None, ["get_weather", "get_time"]),
    ("auto", ["get_weather", "get_time"]),
    ("required", ["get_weather", "get_time"]),  # Ollama cannot force a call: the tools are offered
    ("any", ["get_weather", "get_time"]),
    ("none", []),
    ({"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
]


@pytest.mark.parametrize(("choice", "sent"), TOOL_CHOICES, ids=[str(c) for c, _ in TOOL_CHOICES])
async def test_tool_choice_decides_which_tools_are_sent(server: FakeOllama, backend: OllamaBackend,
                                                        choice: Any, sent: list[str]) -> None:
    await backend.generate(ask(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice))
    body = server.requests[-1].body
    assert [tool["function"]["name"] for tool in body.get("tools") or []] == sent
    assert "tool_choice" not in body


async def test_tool_choice_naming_a_missing_tool_is_rejected(server: FakeOllama, backend: OllamaBackend) -> None:
    with pytest.raises(LLMValidationError) as caught:
        await backend.generate(ask(tools=[WEATHER_TOOL], tool_choice={"type": "function",
                                                                       "function": {"name": "nope"}}))
    assert caught.value.field == "tool_choice"
    assert server.requests == []


async def test_schema_parts_the_client_drops_are_named_in_a_warning(
    server: FakeOllama, backend: OllamaBackend, caplog: pytest.LogCaptureFixture
) -> None:
    nested = {"type": "function", "function": {"name": "search", "parameters": {
        "type": "object", "title": "Search", "additionalProperties": False,
        "properties": {"filters": {"type": "object", "properties": {"year": {"type": "integer"}}},
                       "query": {"type": "string", "description": "what to find"}}}}}
    with caplog.at_level(logging.WARNING, logger="llm.ollama"):
        await backend.generate(ask(tools=[nested]))
    assert "'search': additionalProperties, filters.properties" in caplog.text
    # ollama/ollama-python#429: the client's Tool model really does drop them.
    assert server.requests[-1].body["tools"][0]["function"]["parameters"]["properties"]["filters"] == {
        "type": "object"}


# -- answers -------------------------------------------------------------------------------------------------------


async def test_tool_calls_in_an_answer_come_back_structured(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(chat_reply(tool_calls=[tool_call("get_weather", {"city": "Paris"}),
                                          tool_call("get_time", {"tz": "CET"})], completion_tokens=20))
    response = await backend.generate(ask(tools=[WEATHER_TOOL, TIME_TOOL]))
    assert response.tool_calls == [
        ToolCall("call_0", "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),
        ToolCall("call_1", "get_time", {"tz": "CET"}, '{"tz": "CET"}'),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.metadata["done_reason"] == "stop"  # what Ollama says for a tool call
    assert response.usage == {"prompt_tokens": 7, "completion_tokens": 20, "total_tokens": 27}

    # The answer goes back as history in Ollama's shape.
    await backend.generate(LLMRequest(messages=[
        {"role": "user", "content": "weather?"}, response.to_assistant_message(),
        {"role": "tool", "tool_call_id": "call_1", "content": "13:00"},
        {"role": "tool", "tool_call_id": "call_0", "content": "rain"},
    ], tools=[WEATHER_TOOL, TIME_TOOL]))
    assert server.requests[-1].body["messages"][1:] == [
        {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                                             {"function": {"name": "get_time", "arguments": {"tz": "CET"}}}]},
        {"role": "tool", "content": "13:00", "tool_name": "get_time"},
        {"role": "tool", "content": "rain", "tool_name": "get_weather"},
    ]


async def test_streamed_tool_calls_are_numbered_across_lines(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(chat_stream(["Let me", " check."], tool_calls=[[tool_call("get_weather", {"city": "Oslo"})],
                                                                  [tool_call("get_time", {})]], completion_tokens=9))
    events = await events_of(backend, ask(tools=[WEATHER_TOOL, TIME_TOOL]))
    assert events[:4] == [TextDelta("Let me"), TextDelta(" check."),
                          ToolCallDelta(0, "call_0", "get_weather", '{"city": "Oslo"}'),
                          ToolCallDelta(1, "call_1", "get_time", "{}")]
    final = events[-1]
    assert isinstance(final, ResponseDone) and len(events) == 5
    assert final.response.content == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in final.response.tool_calls] == [
        ("call_0", "get_weather", {"city": "Oslo"}), ("call_1", "get_time", {})]
    assert final.response.finish_reason == "tool_calls"
    assert final.response.usage == {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}


@STREAM
async def test_the_model_actually_used_is_reported(server: FakeOllama, backend: OllamaBackend, stream: bool) -> None:
    used = "llama3.2:latest"
    server.enqueue(chat_stream(["hi"], model=used) if stream else chat_reply("hi", model=used))
    response = await answer(backend, ask(), stream)
    assert server.requests[-1].body["model"] == "llama3.2"
    assert response.model == used


@STREAM
async def test_num_predict_limit_gives_finish_reason_length(server: FakeOllama, backend: OllamaBackend,
                                                            stream: bool) -> None:
    response = await answer(backend, ask("one two three four five", max_tokens=3), stream)
    assert server.requests[-1].body["options"]["num_predict"] == 3
    assert response.content == "echo: one two"
    assert response.finish_reason == "length"
    assert response.usage["completion_tokens"] == 3


async def test_metadata_holds_ollamas_timings_and_thinking(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(replay("ollama/openllmetry__test_ollama_chat_legacy.yaml"))
    response = await backend.generate(ask())
    assert response.metadata == {"done_reason": "stop", "total_duration": 10386172208, "load_duration": 8078850750,
                                 "prompt_eval_duration": 175861000, "eval_duration": 2127200000,
                                 "finish_reason": "stop"}
    line = chat_line("qwen3:8b", "42", done=True, completion_tokens=1)
    line["message"]["thinking"] = "six times seven"
    server.enqueue(Reply(body=line))
    assert (await backend.generate(ask())).metadata["thinking"] == "six times seven"


@pytest.mark.parametrize(("response_format", "sent"), [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": ["a"]}}},
     {"type": "object", "required": ["a"]}),
    ({"type": "text"}, None),
])
async def test_response_format_becomes_ollamas_format(server: FakeOllama, backend: OllamaBackend,
                                                      response_format: dict[str, Any], sent: Any) -> None:
    await backend.generate(ask(extra_params={"response_format": response_format}))
    assert server.requests[-1].body.get("format") == sent


# -- what Ollama cannot take: rejected before the network ------------------------------------------------------------

INVALID = [
    (ask(extra_params={"user": "u-1"}), "extra_params.user"),
    (LLMRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]}]),
     "messages[0].content[1].image_url"),
    (LLMRequest(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}]}]),
     "messages[0].content[0].image_url"),
    (LLMRequest(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{broken"}}]}]),
     "messages[1].tool_calls[0].function.arguments"),
    (ask(extra_params={"response_format": {"type": "xml"}}), "extra_params.response_format"),
    (ask(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]),
     "tools[0].function.parameters.type"),
    (ask(tools=[{"type": "function", "function": {"name": "f", "description": 42}}]), "tools[0].function.description"),
]


@STREAM
@pytest.mark.parametrize(("request_", "field"), INVALID, ids=[field for _, field in INVALID])
async def test_what_ollama_cannot_take_is_rejected_locally(server: FakeOllama, backend: OllamaBackend, stream: bool,
                                                           request_: LLMRequest, field: str) -> None:
    with pytest.raises(LLMValidationError) as caught:
        await answer(backend, request_, stream)
    assert caught.value.field == field
    assert server.requests == []


# -- errors --------------------------------------------------------------------------------------------------------


@STREAM
async def test_a_model_that_is_not_pulled_is_not_found(server: FakeOllama, backend: OllamaBackend,
                                                       stream: bool) -> None:
    with pytest.raises(LLMNotFoundError) as caught:
        await answer(backend, ask(extra_params={"model_name_override": "not-pulled"}), stream)
    error = caught.value
    assert error.message == 'model "not-pulled" not found, try pulling it first'
    assert (error.status_code, error.backend, error.model, error.retryable) == (404, "ollama", "not-pulled", False)
    assert isinstance(error.__cause__, ollama.ResponseError)
    assert server.count("/api/chat") == 1


async def test_an_error_line_before_any_text_is_a_server_error(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(StreamReply(ndjson(['{"error":"the model failed to generate a response"}']), content_type=NDJSON))
    with pytest.raises(LLMServerError) as caught:
        await events_of(backend, ask())
    assert type(caught.value) is LLMServerError
    assert caught.value.message == "the model failed to generate a response"
    assert caught.value.status_code is None and caught.value.retryable
    assert isinstance(caught.value.__cause__, ollama.ResponseError)


async def test_an_error_line_after_text_is_a_stream_error(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(StreamReply(ndjson([chat_line("llama3.2", "Par"), chat_line("llama3.2", "is"),
                                       '{"error":"an error was encountered while running the model"}']),
                               content_type=NDJSON))
    with pytest.raises(LLMStreamError) as caught:
        await events_of(backend, ask())
    assert caught.value.partial_content == "Paris"
    assert "an error was encountered while running the model" in caught.value.message
    assert isinstance(caught.value.__cause__, ollama.ResponseError)


async def test_a_stream_without_its_done_line_is_cut_short(server: FakeOllama, backend: OllamaBackend) -> None:
    server.enqueue(chat_stream(["Hello", " wor"], final=False))  # ends cleanly, but without "done": true
    with pytest.raises(LLMStreamError) as caught:
        await events_of(backend, ask())
    assert caught.value.partial_content == "Hello wor"
    assert isinstance(caught.value.__cause__, LLMConnectionError)


@STREAM
async def test_connection_refused_is_a_connection_error(stream: bool) -> None:
    backend = OllamaBackend(config(closed_port_url()))
    try:
        with pytest.raises(LLMConnectionError) as caught:
            await answer(backend, ask(), stream)
    finally:
        await backend.cleanup()
    # The client raises the builtin ConnectionError for a whole answer; httpx's error comes through in a stream.
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError if stream else ConnectionError)
    assert caught.value.backend == "ollama" and caught.value.retryable


@STREAM
async def test_a_silent_server_times_out_at_the_configured_read_timeout(server: FakeOllama, stream: bool) -> None:
    backend = OllamaBackend(config(server.url, timeout=0.3))
    server.enqueue(Hang())
    try:
        with pytest.raises(LLMTimeoutError) as caught:
            await answer(backend, ask(), stream)
    finally:
        await backend.cleanup()
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_the_configured_key_travels_as_a_bearer_header() -> None:
    async with FakeOllama(api_key="ollama-key") as server:
        keyed = OllamaBackend(config(server.url, api_key="ollama-key"))
        anonymous = OllamaBackend(config(server.url))
        try:
            assert (await keyed.generate(ask())).content == "echo: hello there"
            with pytest.raises(LLMAuthenticationError) as caught:
                await anonymous.generate(ask())
        finally:
            await keyed.cleanup()
            await anonymous.cleanup()
    assert server.requests[0].headers["authorization"] == "Bearer ollama-key"
    assert "authorization" not in server.requests[1].headers
    assert caught.value.status_code == 401 and caught.value.message == "unauthorized"


# -- health --------------------------------------------------------------------------------------------------------


async def test_health_check_lists_tags_only_and_works_before_initialize(server: FakeOllama,
                                                                        backend: OllamaBackend) -> None:
    assert backend.get_available_models() == []
    assert await backend.health_check()
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/api/tags")]
    tags = read_json("ollama/extracted__langchain__api_tags__0.json")["models"]
    assert backend.get_available_models() == [tag["model"] for tag in tags]
    assert "llama3.2:latest" in backend.get_available_models()


def test_base_url_defaults_to_the_local_server() -> None:
    backend = OllamaBackend(LLMConfig(backend_type=LLMBackendType.OLLAMA, model_name="llama3.2"))
    assert backend.base_url == "http://localhost:11434"
    assert OllamaBackend(config("http://gpu:11434")).base_url == "http://gpu:11434"
