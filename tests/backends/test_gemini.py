"""Gemini-specific behaviour: the generateContent request the real google-genai SDK puts on the wire, tool translation
both ways, Gemini's error cases (recorded bodies included), safety blocks, and the fake's own validation.

The generic behaviours (status table, timeouts, broken streams, validation) run for Gemini in
tests/backends/test_shared_behaviours.py through `tests.fakes.gemini_fake.VENDOR`.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
from google.genai import errors as genai_errors

from llm import errors
from llm.backends import gemini as gemini_module
from llm.backends.gemini import GeminiBackend, map_finish_reason, translate_gemini_error
from llm.base import LLMConfig, LLMRequest, LLMResponse, ResponseDone, TextDelta, ToolCall, ToolCallDelta
from tests.fakes.gemini_fake import API_KEY, QUOTA_BODY, VENDOR, FakeGemini, error_reply, sse_frames, text_chunks
from tests.fakes.recordings import interaction_body, interaction_request, read_json, read_text, replay
from tests.fakes.server import Reply, StreamReply

STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
TOOLS_SYNC = "gemini/mirascope__test_call_with_tools_google_gemini_2_5_flash_sync.yaml"
SAFETY = "gemini/pydantic_ai__test_google_model_safety_settings.yaml"
GENERATE = "enerateContent"  # both :generateContent and :streamGenerateContent


@pytest.fixture
async def server() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
async def backend(server: FakeGemini) -> AsyncIterator[GeminiBackend]:
    instance = GeminiBackend(VENDOR.config(server))
    yield instance
    await instance.cleanup()


async def call(backend: GeminiBackend, request: LLMRequest, stream: bool) -> LLMResponse:
    """generate(), or stream() collected; the streamed text must add up to the final content."""
    if not stream:
        return await backend.generate(request)
    events = [event async for event in backend.stream(request)]
    assert isinstance(events[-1], ResponseDone)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == events[-1].response.content
    return events[-1].response


def hello(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello there"}], max_tokens=50, **kwargs)


def answer(*parts: dict[str, Any], finish: str | None = "STOP", model: str = "gemini-2.5-flash") -> dict[str, Any]:
    candidate = {"content": {"parts": list(parts), "role": "model"}, "index": 0, **({"finishReason": finish} if finish
                                                                                     else {})}
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "resp-1"}


def scripted(body: dict[str, Any], stream: bool) -> Reply | StreamReply:  # one SSE event when streamed
    return StreamReply(sse_frames([body])) if stream else Reply(body=body)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
SIGNATURE = base64.b64encode(b"\xfb\xff\xfe signature").decode()  # "+" and "/" in the standard alphabet
SCHEMA = {"name": "reply", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}


@STREAM
async def test_full_request_body_in_gemini_format(server: FakeGemini, backend: GeminiBackend, stream: bool) -> None:
    request = LLMRequest(
        system_prompt="You are terse.",
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?s=2"}}]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "c1", "type": "function", "thought_signature": SIGNATURE,
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
            {"role": "tool", "tool_call_id": "c2", "content": "noon"},
            {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
            {"role": "user", "content": "Thanks!"},
        ],
        temperature=0, max_tokens=50, tools=[WEATHER, CLOCK],
        extra_params={"top_p": 0.9, "top_k": 40, "stop": "END", "seed": 7, "frequency_penalty": 0.1,
                      "presence_penalty": 0.2, "response_format": {"type": "json_schema", "json_schema": SCHEMA}},
    )
    response = await call(backend, request, stream)
    recorded = server.requests[-1]
    assert recorded.path == "/v1beta/models/gemini-2.5-flash:" + ("streamGenerateContent" if stream else
                                                                  "generateContent")
    assert recorded.query == ({"alt": "sse"} if stream else {})
    signature = base64.urlsafe_b64encode(base64.b64decode(SIGNATURE)).decode()  # the SDK sends URL-safe base64
    assert recorded.body == {
        "contents": [
            {"role": "user", "parts": [
                {"text": "What is in these?"},
                {"inlineData": {"data": "iVBORw0KGgo=", "mime_type": "image/png"}},
                {"fileData": {"file_uri": "https://example.com/cat.webp?s=2", "mime_type": "image/webp"}}]},
            {"role": "model", "parts": [
                {"text": "Let me check."},
                {"functionCall": {"id": "c1", "name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": signature},
                {"functionCall": {"id": "c2", "name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [  # consecutive tool results: one content
                {"functionResponse": {"id": "c1", "name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"id": "c2", "name": "get_time", "response": {"result": "noon"}}}]},
            {"role": "user", "parts": [{"text": "Thanks!"}]},
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are terse.\n\nAnswer in French.\n\nBe kind."}]},
        "tools": [{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather for a city",
             # the JSON schema passes unchanged, under the REST API's camelCase name (a proxy drops snake_case)
             "parametersJsonSchema": WEATHER["function"]["parameters"]},
            {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}}]}],
        "generationConfig": {"temperature": 0.0, "maxOutputTokens": 50, "topP": 0.9, "topK": 40.0,
                             "stopSequences": ["END"], "seed": 7, "frequencyPenalty": 0.1, "presencePenalty": 0.2,
                             "responseMimeType": "application/json", "responseJsonSchema": SCHEMA["schema"]},
    }
    assert response.content == "Thanks!"  # asked for JSON, the fake answers the last user text verbatim
    assert response.usage == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}


async def test_recorded_tool_round_trip_sends_the_history_the_recording_sent(
    server: FakeGemini, backend: GeminiBackend,
) -> None:
    """Replay the recorded parallel calls, send the results back: the contents match what the real client sent."""
    server.enqueue(replay(TOOLS_SYNC, 0), replay(TOOLS_SYNC, 1))
    question = {"role": "user", "content": interaction_request(TOOLS_SYNC, 0)["contents"][0]["parts"][0]["text"]}
    tool = {"type": "function", "function": {"name": "secret_retrieval_tool", "parameters": {"type": "object"}}}
    system = "Use parallel tool calling."
    first = await backend.generate(LLMRequest(messages=[question], system_prompt=system, tools=[tool]))
    assert first.tool_calls == [
        ToolCall("call_0", "secret_retrieval_tool", {"password": "mellon"}, '{"password": "mellon"}'),
        ToolCall("call_1", "secret_retrieval_tool", {"password": "radiance"}, '{"password": "radiance"}'),
    ]
    assert first.finish_reason == "tool_calls"
    signature = read_json("gemini/extracted__mirascope__gemini_2_5_flash_tools_sync__0.json")["candidates"][0][
        "content"]["parts"][0]["thoughtSignature"]
    assert first.metadata["thought_signatures"] == {"call_0": signature}
    assert (first.metadata["raw_finish_reason"], first.metadata["response_id"]) == ("STOP", "AJnyaJv6GPulqtsP5Z6fgAs")
    assistant = first.to_assistant_message()
    assistant["tool_calls"][0]["thought_signature"] = first.metadata["thought_signatures"]["call_0"]
    results = [{"role": "tool", "tool_call_id": call.id, "content": json.dumps({"output": secret})}
               for call, secret in zip(first.tool_calls, ("Welcome to Moria!", "Life before Death"), strict=True)]
    second = await backend.generate(LLMRequest(messages=[question, assistant, *results], system_prompt=system,
                                               tools=[tool]))
    assert second.content.startswith("The secrets have been retrieved.")
    assert second.usage == {"prompt_tokens": 152, "completion_tokens": 37, "total_tokens": 189}
    sent = server.requests[-1].body
    for part in (part for content in sent["contents"] for part in content["parts"]):
        for key in {"functionCall", "functionResponse"} & set(part):  # the recording's client sent no ids
            assert part[key].pop("id") in ("call_0", "call_1")
    expected = interaction_request(TOOLS_SYNC, 1)
    assert (sent["contents"], sent["systemInstruction"]) == (expected["contents"], expected["systemInstruction"])


@STREAM
@pytest.mark.parametrize(("choice", "config", "called"), [
    ("auto", {"mode": "AUTO"}, []), ("none", {"mode": "NONE"}, []),
    ("required", {"mode": "ANY"}, ["get_weather"]), ("any", {"mode": "ANY"}, ["get_weather"]),
    ({"type": "function", "function": {"name": "get_time"}}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
     ["get_time"]),
    (None, None, []),
], ids=["auto", "none", "required", "any", "function", "unset"])
async def test_tool_choice_translation(server: FakeGemini, backend: GeminiBackend, stream: bool, choice: Any,
                                       config: dict[str, Any] | None, called: list[str]) -> None:
    """The fake calls a function when the mode is ANY (the first allowed one, else the first declared)."""
    response = await call(backend, hello(tools=[WEATHER, CLOCK], tool_choice=choice), stream)
    body = server.requests[-1].body
    assert body.get("toolConfig") == ({"functionCallingConfig": config} if config else None)
    assert [call.name for call in response.tool_calls] == called
    assert response.finish_reason == ("tool_calls" if called else "stop")


async def test_streamed_function_calls_arrive_as_deltas_with_stable_ids(server: FakeGemini,
                                                                        backend: GeminiBackend) -> None:
    calls = [answer({"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}, finish=None),
             answer({"functionCall": {"name": "get_time", "args": {}}},
                    {"functionCall": {"id": "server-id", "name": "get_weather", "args": {"city": "Rome"}}})]
    server.enqueue(StreamReply(sse_frames(calls)))
    events = [event async for event in backend.stream(hello(tools=[WEATHER, CLOCK]))]
    assert [(d.index, d.id, d.name, d.arguments) for d in events if isinstance(d, ToolCallDelta)] == [
        (0, "call_0", "get_weather", '{"city": "Oslo"}'),
        (1, "call_1", "get_time", "{}"),
        (2, "server-id", "get_weather", '{"city": "Rome"}'),
    ]
    final = events[-1]
    assert isinstance(final, ResponseDone) and final.response.finish_reason == "tool_calls"
    assert [(c.id, c.arguments) for c in final.response.tool_calls] == [
        ("call_0", {"city": "Oslo"}), ("call_1", {}), ("server-id", {"city": "Rome"})]


@STREAM
@pytest.mark.parametrize(("request_", "field"), [
    (hello(extra_params={"user": "u-1"}), "extra_params.user"),
    (hello(extra_params={"response_format": {"type": "xml"}}), "extra_params.response_format"),
    (hello(extra_params={"top_k": "many"}), "extra_params.top_k"),
    (hello(extra_params={"model_name_override": "models/x?key=1"}), "model"),
    (LLMRequest(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]), "messages[0].content[0]"),
    (LLMRequest(messages=[{"role": "tool", "tool_call_id": "nope", "content": "42"}]), "messages[0].tool_call_id"),
    (LLMRequest(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]},
                          {"role": "user", "content": "hi"}]), "messages[0].content"),
], ids=["user", "response_format", "top_k", "model", "data-url", "orphan-tool-result", "system-image"])
async def test_what_gemini_cannot_take_is_rejected_before_the_call(
    server: FakeGemini, backend: GeminiBackend, stream: bool, request_: LLMRequest, field: str,
) -> None:
    with pytest.raises(errors.LLMValidationError) as caught:
        await call(backend, request_, stream)
    assert caught.value.field == field
    assert server.requests == []


@STREAM
async def test_model_used_thoughts_and_json_mode(server: FakeGemini, backend: GeminiBackend, stream: bool) -> None:
    """The model is the answer's modelVersion; thought parts are no answer text but count as completion tokens."""
    body = answer({"text": "Let me think...", "thought": True}, {"text": "Four."}, model="gemini-2.5-flash-001")
    body["usageMetadata"].update(thoughtsTokenCount=5, totalTokenCount=11)
    server.enqueue(scripted(body, stream))
    extra = {"model_name_override": "gemini-2.5-pro", "response_format": {"type": "json_object"}, "stop": ["a", "b"]}
    response = await call(backend, hello(extra_params=extra), stream)
    assert server.requests[-1].path.startswith("/v1beta/models/gemini-2.5-pro:")
    assert server.requests[-1].body["generationConfig"] == {
        "temperature": 0.7, "maxOutputTokens": 50, "responseMimeType": "application/json", "stopSequences": ["a", "b"]}
    assert (response.model, response.content, response.metadata["response_id"]) == ("gemini-2.5-flash-001", "Four.",
                                                                                     "resp-1")
    assert response.usage == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11, "reasoning_tokens": 5}


def test_finish_reason_table() -> None:
    table = {"STOP": "stop", "MAX_TOKENS": "length", "MALFORMED_FUNCTION_CALL": "error", "OTHER": "stop",
             **dict.fromkeys(("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"), "content_filter")}
    assert {reason: map_finish_reason(reason) for reason in table} == table
    assert map_finish_reason(None) is None


BLOCKS = {  # recorded bodies: (whole answer, the same as the one SSE event of a stream), message, model
    "prompt-blocked": (read_json("gemini/vercel_ai__issue-19758-prompt-block.json"), "prompt (PROHIBITED_CONTENT)",
                       "gemini-3.7-flash"),
    "prompt-blocked-chunk": (json.loads(read_text("gemini/vercel_ai__issue-19758-prompt-block.chunks.txt")),
                             "prompt (PROHIBITED_CONTENT)", "gemini-3.7-flash"),
}


@STREAM
@pytest.mark.parametrize("block", BLOCKS)
async def test_a_safety_block_is_a_content_filter_error(server: FakeGemini, backend: GeminiBackend, stream: bool,
                                                        block: str) -> None:
    body, message, model = BLOCKS[block]
    server.enqueue(scripted(body, stream))
    with pytest.raises(errors.LLMContentFilterError) as caught:
        await call(backend, hello(), stream)
    assert message in str(caught.value)
    assert (caught.value.backend, caught.value.model, caught.value.retryable) == ("gemini", model, False)
    assert server.count(GENERATE) == 1


@STREAM
async def test_an_answer_blocked_by_safety_is_a_content_filter_finish(server: FakeGemini, backend: GeminiBackend,
                                                                       stream: bool) -> None:
    """One rule on every vendor: a blocked prompt raises, a blocked answer ends with finish_reason content_filter."""
    server.enqueue(scripted(json.loads(interaction_body(SAFETY)), stream))
    response = await call(backend, hello(), stream)
    assert (response.content, response.finish_reason) == ("", "content_filter")
    assert response.metadata["raw_finish_reason"] == "SAFETY"


async def test_answer_cut_by_safety_after_text_keeps_the_text(server: FakeGemini, backend: GeminiBackend) -> None:
    ratings = [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]
    cut = answer(finish="SAFETY")
    cut["candidates"][0].update(content={}, safetyRatings=ratings)
    server.enqueue(StreamReply([*text_chunks("Once upon"), *sse_frames([cut])]))
    response = await call(backend, hello(), True)
    assert response.content == "Once upon"
    assert response.finish_reason == "content_filter"
    assert response.metadata["safety_ratings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]


@STREAM
@pytest.mark.parametrize(("cassette", "error_class", "status"), [
    ("gemini/mirascope__test_authentication_error_google_gemini_2_5_flash.yaml", errors.LLMAuthenticationError, 400),
    ("gemini/mirascope__test_model_not_found_google_gemini_2_5_flash.yaml", errors.LLMNotFoundError, 404),
    ("gemini/crewai__TestAgentMultimodalGemini.test_video_file_gemini-2.0-flash.yaml", errors.LLMRateLimitError, 429),
], ids=["api-key-invalid", "model-not-found", "resource-exhausted"])
async def test_recorded_error_bodies(server: FakeGemini, backend: GeminiBackend, stream: bool, cassette: str,
                                     error_class: type[errors.LLMBackendError], status: int) -> None:
    """A bad key is a 400 INVALID_ARGUMENT whose ErrorInfo reason API_KEY_INVALID makes it an authentication error."""
    server.enqueue(replay(cassette))
    with pytest.raises(errors.LLMBackendError) as caught:
        await call(backend, hello(), stream)
    assert type(caught.value) is error_class
    assert isinstance(caught.value.__cause__, genai_errors.ClientError)
    assert (caught.value.status_code, caught.value.retry_after, caught.value.retryable) == (status, None, status == 429)
    assert server.count(GENERATE) == 1


def quota_error(message: str, *details: dict[str, Any]) -> Reply:
    error = {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": list(details)}
    return Reply(status=429, body={"error": error})


def violation(quota_id: str, value: str = "10") -> dict[str, Any]:
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": metric, "quotaId": quota_id, "quotaValue": value}]}


RETRY_30S = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
EXCEEDED = "You exceeded your current quota, please check your plan and billing details."
TOO_LONG = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."


@STREAM
@pytest.mark.parametrize(("reply", "error_class", "retry_after"), [
    (quota_error(EXCEEDED, violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), RETRY_30S),
     errors.LLMRateLimitError, 30.0),
    (Reply(status=429, body=QUOTA_BODY), errors.LLMQuotaExceededError, 20.0),
    (quota_error(EXCEEDED, violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "0")),
     errors.LLMQuotaExceededError, None),
    (quota_error(EXCEEDED + "\n* Quota exceeded for metric: input_token_count, limit: 0, model: gemini-2.5-pro"),
     errors.LLMQuotaExceededError, None),
    (quota_error("Your project has exceeded its monthly spending cap."), errors.LLMQuotaExceededError, None),
    (quota_error("Resource exhausted. Please try again later."), errors.LLMRateLimitError, None),
    (Reply(429, quota_error(EXCEEDED, RETRY_30S).body, {"retry-after": "3"}), errors.LLMRateLimitError, 3.0),
    (Reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": TOO_LONG}}),
     errors.LLMContextLengthError, None),
], ids=["per-minute", "per-day", "quota-value-0", "limit-0", "spend-cap", "plain", "header-wins", "context-length"])
async def test_error_details_choose_the_class(server: FakeGemini, backend: GeminiBackend, stream: bool, reply: Reply,
                                              error_class: type[errors.LLMBackendError],
                                              retry_after: float | None) -> None:
    server.enqueue(reply)
    with pytest.raises(errors.LLMBackendError) as caught:
        await call(backend, hello(), stream)
    assert type(caught.value) is error_class
    assert (caught.value.status_code, caught.value.retry_after) == (reply.status, retry_after)
    assert caught.value.retryable == (error_class is errors.LLMRateLimitError)


@pytest.mark.parametrize(("error", "error_class", "status"), [
    ({"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"},
     errors.LLMServerError, 503),
    ({"code": 429, "message": "Resource exhausted. Please try again later.", "status": "RESOURCE_EXHAUSTED"},
     errors.LLMRateLimitError, 429),
], ids=["unavailable", "resource-exhausted"])
async def test_error_chunk_before_any_text_is_typed_and_retryable(
    server: FakeGemini, backend: GeminiBackend, error: dict[str, Any], error_class: type[errors.LLMBackendError],
    status: int,
) -> None:
    server.enqueue(StreamReply(sse_frames([{"error": error}])))
    with pytest.raises(errors.LLMBackendError) as caught:
        await call(backend, hello(), True)
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, genai_errors.APIError)


@pytest.mark.parametrize(("reply", "partial"), [
    (VENDOR.midstream_error[0], "Hello wor"), (VENDOR.malformed_chunk, "Hello"),
    (StreamReply(text_chunks("Hel", "lo")), "Hello"),  # the stream ends without a finishReason: cut short
], ids=["error-chunk", "malformed", "no-finish-reason"])
async def test_a_failed_stream_keeps_its_text_and_gives_its_connection_back(
    server: FakeGemini, backend: GeminiBackend, reply: StreamReply, partial: str,
) -> None:
    """google-genai leaves its inner generators (and the HTTP response) open when it raises mid-stream."""
    server.enqueue(reply)
    with pytest.raises(errors.LLMStreamError) as caught:
        await call(backend, hello(), True)
    assert caught.value.partial_content == partial
    pool = backend._http._transport._pool  # httpx2 internals: the only view on the pool
    assert all(connection.is_idle() or connection.is_closed() for connection in pool.connections)


@pytest.mark.parametrize(("exc", "error_class"), [
    (aiohttp.ServerDisconnectedError(), errors.LLMConnectionError),
    (aiohttp.ClientPayloadError("Response payload is not completed"), errors.LLMConnectionError),
    (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), errors.LLMTimeoutError),
    (httpx.ReadTimeout("timed out"), errors.LLMTimeoutError),
    (httpx.RemoteProtocolError("peer closed connection"), errors.LLMConnectionError),
    (httpx2.ConnectError("All connection attempts failed"), errors.LLMConnectionError),
    (ConnectionRefusedError(111, "Connection refused"), errors.LLMConnectionError),
    (genai_errors.UnknownApiResponseError("Failed to parse response as JSON."), errors.LLMServerError),
    (genai_errors.ServerError(500, {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}),
     errors.LLMServerError),
    (RuntimeError("unexpected"), errors.LLMBackendError),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "")
def test_every_transport_google_genai_may_use_is_mapped(exc: Exception,
                                                        error_class: type[errors.LLMBackendError]) -> None:
    mapped = translate_gemini_error(exc, backend="gemini", model="m")
    assert type(mapped) is error_class
    assert mapped.backend == "gemini"


async def test_connect_timeout_is_capped_below_the_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemini_module, "CONNECT_TIMEOUT", 0.3)  # test-scaled; 10 s in production
    with ExitStack() as stack:  # a port whose accept queue is full: a TCP connect hangs, as to a firewalled host
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        backend = GeminiBackend(LLMConfig(backend_type="gemini", model_name="gemini-2.5-flash", api_key=API_KEY,
                                          base_url=f"http://127.0.0.1:{port}", timeout=5))
        start = time.monotonic()
        try:
            with pytest.raises(errors.LLMTimeoutError) as caught:
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert time.monotonic() - start < 2.0
    assert isinstance(caught.value.__cause__, httpx2.ConnectTimeout)


async def test_api_key_travels_only_in_the_header(server: FakeGemini, backend: GeminiBackend) -> None:
    await backend.generate(hello())
    await call(backend, hello(), True)
    assert await backend.health_check()
    await backend.cleanup()  # and the backend works again after cleanup
    assert (await backend.generate(hello())).content == "echo: hello there"
    assert len(server.requests) == 4
    for recorded in server.requests:
        assert recorded.headers["x-goog-api-key"] == API_KEY
        assert "key" not in recorded.query
        assert API_KEY not in recorded.path


async def test_health_check_only_lists_models(server: FakeGemini, backend: GeminiBackend) -> None:
    assert await backend.health_check()
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1beta/models")]  # no generation
    assert backend.get_available_models()[:2] == ["gemini-2.5-flash", "gemini-2.5-pro"]
    server.enqueue(error_reply(503, {}))
    assert not await backend.health_check()


async def test_missing_key_is_a_config_error_naming_the_variable(server: FakeGemini) -> None:
    backend = GeminiBackend(VENDOR.config(server, api_key=None))
    with pytest.raises(errors.LLMConfigError, match="SCOUT_GEMINI_API_KEY"):
        await backend.generate(hello())
    assert server.requests == []


async def test_the_environment_cannot_redirect_or_reconfigure_the_client(
    server: FakeGemini, backend: GeminiBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9", "GOOGLE_GENAI_API_VERSION": "v1",
                        "GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_GENAI_HTTP_CLIENT": "httpx",
                        "GOOGLE_API_KEY": "AIza-env", "GOOGLE_GENAI_CLIENT_MODE": "replay"}.items():
        monkeypatch.setenv(name, value)  # set before the (lazily created) client; none may change where it goes
    assert (await backend.generate(hello())).content == "echo: hello there"
    assert server.requests[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert server.requests[-1].headers["x-goog-api-key"] == API_KEY


def test_importing_the_adapter_loads_no_sdk() -> None:
    code = ("import sys, llm.backends.gemini; "
            "assert not [m for m in sys.modules if m.startswith(('google.genai', 'httpx2'))], 'SDK imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


GOOD = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
CALL_TURN = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
KEY, RESULT = {"x-goog-api-key": API_KEY}, {"functionResponse": {"name": "f", "response": {}}}


@pytest.mark.parametrize(("headers", "body", "status", "message"), [
    ({}, GOOD, 403, "Method doesn't allow unregistered callers"),
    ({"x-goog-api-key": "wrong"}, GOOD, 400, "API key not valid."),  # the recorded body, ErrorInfo API_KEY_INVALID
    (KEY, {"contents": []}, 400, "contents is not specified"),
    (KEY, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, 400, "Please use a valid role: user, model"),
    (KEY, {"contents": [{"role": "user", "parts": []}]}, 400, "must not be empty"),
    (KEY, {**GOOD, "generation_config": {"temperature": 2.5}}, 400, "[0.0, 2.0]"),  # snake_case names are valid too
    (KEY, {**GOOD, "model": "x"}, 400, 'Unknown name "model"'),
    (KEY, {"contents": [*GOOD["contents"], CALL_TURN, {"role": "user", "parts": [RESULT, RESULT]}]}, 400,
     "number of function response parts"),
], ids=["no-key", "bad-key", "no-contents", "bad-role", "empty-parts", "temperature", "unknown-field", "results"])
async def test_fake_rejects_what_the_api_rejects(server: FakeGemini, headers: dict[str, str], body: dict[str, Any],
                                                 status: int, message: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=headers) as reply:
        assert reply.status == status
        error = (await reply.json())["error"]
    assert message in error["message"]
    assert error["code"] == status

