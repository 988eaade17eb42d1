"""OpenAI-specific behaviour: the Chat Completions request body, the tool round trip and the recorded errors.

The behaviours every vendor shares are in test_shared_behaviours.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm.backends.deepseek import DeepSeekBackend
from llm.backends.openai import OpenAIBackend, max_tokens_param
from llm.base import LLMBackendType, LLMConfig, LLMRequest, ResponseDone
from llm.errors import LLMAuthenticationError, LLMBadRequestError, LLMConfigError, LLMNotFoundError
from tests.fakes.openai_fake import API_KEY, OPENAI_DETAILS, FakeOpenAI
from tests.fakes.recordings import interaction_request, replay

TOOL_BASIC = "openai/llm__test_tool_use_basic.yaml"
MULTIPLY = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two numbers.",
    "parameters": {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"],
                   "type": "object"}}}


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def backend(server: FakeOpenAI) -> AsyncIterator[OpenAIBackend]:
    instance = OpenAIBackend(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="gpt-4o-mini", api_key=API_KEY,
                                       base_url=server.base_url, timeout=5))
    yield instance
    await instance.cleanup()


async def collect(backend: OpenAIBackend, request: LLMRequest) -> Any:
    final = None
    async for event in backend.stream(request):
        if isinstance(event, ResponseDone):
            final = event.response
    return final


async def test_request_body_in_chat_completions_format(server: FakeOpenAI, backend: OpenAIBackend) -> None:
    request = LLMRequest(
        messages=[
            {"role": "system", "content": "rule one"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": "ok"},
            {"role": "system", "content": "rule two"},
            {"role": "user", "content": "and now?"},
        ],
        system_prompt="be brief", temperature=0, max_tokens=64, tools=[MULTIPLY],
        tool_choice={"type": "function", "function": {"name": "multiply"}},
        extra_params={"top_p": 0.5, "stop": ["END"], "seed": 7},
    )
    await backend.generate(request)
    body = server.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][1:] == request.messages, "turns, parts and every system message kept in place"
    # Not OpenAI's own host: the output limit goes out as `max_tokens`, which OpenAI-compatible servers honour.
    assert body["temperature"] == 0 and body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert body["tools"] == [MULTIPLY] and body["tool_choice"] == {"type": "function", "function": {"name": "multiply"}}
    assert (body["top_p"], body["stop"], body["seed"]) == (0.5, ["END"], 7)
    assert "stream" not in body


async def test_stream_asks_for_usage(server: FakeOpenAI, backend: OpenAIBackend) -> None:
    response = await collect(backend, LLMRequest(messages=[{"role": "user", "content": "hi"}], tool_choice="none"))
    body = server.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tool_choice"] == "none"
    assert response.usage["total_tokens"] > 0


@pytest.mark.parametrize(("ours", "theirs"), [("any", "required"), ("required", "required"), ("auto", "auto")])
async def test_tool_choice_translation(server: FakeOpenAI, backend: OpenAIBackend, ours: str, theirs: str) -> None:
    await backend.generate(LLMRequest(messages=[{"role": "user", "content": "x"}], tools=[MULTIPLY], tool_choice=ours))
    assert server.requests[-1].body["tool_choice"] == theirs


async def test_recorded_tool_round_trip(server: FakeOpenAI, backend: OpenAIBackend) -> None:
    """Replay both interactions of a real streamed tool exchange: the call, then the answer to its result."""
    question = [{"role": "user", "content": "What is 1231 * 2331?"}]
    server.enqueue(replay(TOOL_BASIC, 0), replay(TOOL_BASIC, 1))
    first = await collect(backend, LLMRequest(messages=question, tools=[MULTIPLY]))
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_1EYWDzueHEp8OsB8jJSEp7WB", "multiply", {"a": 1231, "b": 2331})]
    history = [*question, first.to_assistant_message(),
               {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "2869461"}]
    final = await collect(backend, LLMRequest(messages=history, tools=[MULTIPLY]))
    assert final.content.endswith(").") and "2869461" in final.content.replace(",", "")
    assert final.usage == {"prompt_tokens": 87, "completion_tokens": 26, "total_tokens": 113, **OPENAI_DETAILS}
    sent = server.requests[-1].body["messages"]
    recorded = interaction_request(TOOL_BASIC, 1)["messages"]
    assert sent[-1] == recorded[-1], "the tool result goes back as the real client sent it"
    assert sent[-2]["tool_calls"][0]["id"] == recorded[-2]["tool_calls"][0]["id"]
    assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"a": 1231, "b": 2331}


async def test_recorded_full_stream_cassette(server: FakeOpenAI, backend: OpenAIBackend) -> None:
    server.enqueue(replay("openai/mirascope__test_call_openai_gpt_4o_completions_stream.yaml"))
    response = await collect(backend, LLMRequest(messages=[{"role": "user", "content": "What is 4200 + 42?"}]))
    assert response.content == "4200 + 42 equals 4242."
    assert response.model == "gpt-4o-2024-08-06" and response.finish_reason == "stop"


@pytest.mark.parametrize(
    ("cassette", "error_class", "status", "request_id", "message"),
    [
        ("openai/mirascope__test_authentication_error_openai_gpt_4o_completions.yaml", LLMAuthenticationError, 401,
         "req_1963efc19b3b4865af98403581d580af", "Incorrect API key provided: invalid-*****2345"),
        ("openai/otel__test_chat_completion_404.yaml", LLMNotFoundError, 404, "req_c3e0f92d7b5426d1a4a17bb3d39953ea",
         "The model `this-model-does-not-exist` does not exist"),
        ("openai/pydantic_ai__test_openai_o1_mini_system_role_system.yaml", LLMBadRequestError, 400, None,
         "does not support 'system' with this model"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_recorded_errors(server: FakeOpenAI, backend: OpenAIBackend, cassette: str,
                               error_class: type[Exception], status: int, request_id: str | None, message: str,
                               stream: bool) -> None:
    server.enqueue(replay(cassette))
    request = LLMRequest(messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(error_class) as caught:
        await (collect(backend, request) if stream else backend.generate(request))
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status and error.request_id == request_id  # type: ignore[attr-defined]
    assert message in str(error)
    assert server.count("/chat/completions") == 1
    assert server.requests[-1].headers["x-stainless-retry-count"] == "0"


async def test_deepseek_uses_max_tokens_and_its_key(server: FakeOpenAI) -> None:
    backend = DeepSeekBackend(LLMConfig(backend_type=LLMBackendType.DEEPSEEK, model_name="deepseek-chat",
                                        api_key=API_KEY, base_url=server.base_url))
    try:
        response = await backend.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5))
    finally:
        await backend.cleanup()
    body = server.requests[-1].body
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body
    assert response.backend_type == "deepseek" and response.model == "deepseek-chat"
    assert server.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(("base_url", "setting", "expected"), [
    (None, None, "max_completion_tokens"),
    ("https://api.openai.com/v1", None, "max_completion_tokens"),
    ("https://my-team.openai.azure.com/openai/v1", None, "max_completion_tokens"),
    ("http://127.0.0.1:8000/v1", None, "max_tokens"),
    ("https://openrouter.ai/api/v1", None, "max_tokens"),
    ("https://api.openai.com.evil.example/v1", None, "max_tokens"),
    ("http://127.0.0.1:8000/v1", "max_completion_tokens", "max_completion_tokens"),
    (None, "max_tokens", "max_tokens"),
])
def test_the_output_limit_key_depends_on_the_endpoint(base_url: str | None, setting: str | None,
                                                       expected: str) -> None:
    assert max_tokens_param(base_url, setting) == expected


async def test_max_tokens_param_is_configurable_per_backend(server: FakeOpenAI) -> None:
    config = LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="gpt-4o-mini", api_key=API_KEY,
                       base_url=server.base_url, extra_params={"max_tokens_param": "max_completion_tokens"})
    backend = OpenAIBackend(config)
    try:
        await backend.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=7))
    finally:
        await backend.cleanup()
    body = server.requests[-1].body
    assert body["max_completion_tokens"] == 7 and "max_tokens" not in body
    with pytest.raises(LLMConfigError, match="max_tokens_param"):
        OpenAIBackend(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m", api_key=API_KEY,
                                extra_params={"max_tokens_param": "max_output_tokens"}))
