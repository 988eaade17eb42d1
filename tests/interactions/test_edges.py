"""Where two features meet: structured output and strict schemas, secrets and settings, config checks, and the smaller
edges. Every test runs the real SDK clients against the fakes in tests/fakes/, or the public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llm.backends.claude import ClaudeBackend
from llm.backends.gemini import GeminiBackend
from llm.base import LLMBackend, LLMConfig, ResponseDone, TextDelta
from llm.config import LLMSettings, ScoutConfig
from llm.errors import LLMConfigError, LLMError
from llm.manager import LLMManager
from tests.agents.test_mixin_routing import Agent
from tests.cli.runner import clean_env
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude, claude_sse
from tests.fakes.gemini_fake import FakeGemini, text_chunks
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import Reply, StreamReply
from tests.manager.helpers import FAST, VENDOR, open_connections, request, wait_closed

PASSWORD = "hunter2-CANARY-redis-password"
REDIS_URL = f"redis://:{PASSWORD}@127.0.0.1:6390/0"


def manager_policy_class() -> type[Any]:
    """`ManagerPolicy`, wherever the layout puts it (llm.manager exposes it through the manager's `policy`)."""
    return type(LLMManager().policy)


def openai_answer(content: str) -> Reply:
    return Reply(body={"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})


# -- strict structured output and nested optional fields ---------------------------------------------------------------


class Item(BaseModel):
    name: str
    score: float = 0.5


class Items(BaseModel):
    items: list[Item]


NESTED_NULL = '{"items": [{"name": "a", "score": null}]}'


async def test_a_nested_optional_field_sent_as_null_under_the_strict_schema_is_valid() -> None:
    """The strict schema OpenAI is sent makes `score` nullable; the model uses that: the answer is valid as sent."""
    async with FakeOpenAI() as server:
        server.enqueue(openai_answer(NESTED_NULL), openai_answer(NESTED_NULL))
        async with LLMManager(**FAST) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            response = await manager.generate(request("list", response_format=Items))
    sent = server.requests[0].body["response_format"]["json_schema"]["schema"]
    assert sent["$defs"]["Item"]["properties"]["score"]["anyOf"][-1] == {"type": "null"}  # what made null valid
    assert response.parsed == Items(items=[Item(name="a", score=0.5)])  # the model's default applies
    assert server.count("/chat/completions") == 1  # no repair asked for


async def test_a_nested_optional_field_sent_as_null_is_valid_for_a_strict_json_schema_dict() -> None:
    schema = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "score": {"type": "number"}}}}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "items", "schema": schema, "strict": True}}
    async with FakeOpenAI() as server:
        server.enqueue(openai_answer(NESTED_NULL), openai_answer(NESTED_NULL))
        async with LLMManager(**FAST) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            response = await manager.generate(request("list", response_format=response_format))
    assert response.parsed["items"][0]["name"] == "a"
    assert response.parsed["items"][0].get("score") is None
    assert server.count("/chat/completions") == 1


# -- the Redis password ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [REDIS_URL, f"rediss://scout:{PASSWORD}@cache.example:6380/1"])
def test_the_redis_password_never_shows_in_the_manager_policy(url: str) -> None:
    manager = LLMManager(redis_url=url)
    policy = manager.policy
    for text in (repr(policy), str(policy), repr(manager), repr(manager_policy_class()(redis_url=url))):
        assert PASSWORD not in text
    assert "127.0.0.1" in repr(policy) or "cache.example" in repr(policy)  # where it points is still said


def test_save_state_keeps_the_redis_password_masked(tmp_path: Path) -> None:
    config = ScoutConfig(llm=LLMSettings(redis_url=REDIS_URL))
    config.api.openai_api_key = OPENAI_KEY
    agent = Agent(name="saver", config=config)
    path = tmp_path / "state.json"
    agent.save_state(path)
    text = path.read_text(encoding="utf-8")
    assert OPENAI_KEY not in text  # the API key already stays masked
    assert PASSWORD not in text
    assert json.loads(text)["config"]["llm"]["redis_url"]  # still there, masked


# -- LLMConfig's fields are checked where they are built ---------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("retry_attempts", "3"), ("retry_attempts", 0), ("retry_attempts", True), ("retry_attempts", 2.5),
    ("max_tokens", -5), ("max_tokens", 0), ("max_tokens", "100"),
    ("temperature", 9.0), ("temperature", -1.0), ("temperature", float("nan")), ("temperature", "0.7"),
])
def test_an_llm_config_field_out_of_its_range_is_a_config_error_naming_it(field: str, value: Any) -> None:
    with pytest.raises(LLMConfigError, match=field):
        LLMConfig(backend_type="openai", model_name="gpt-4.1-mini", api_key=OPENAI_KEY, **{field: value})


async def test_a_string_retry_count_never_reaches_the_retry_loop_as_a_type_error() -> None:
    async with FakeOpenAI() as server:
        server.enqueue(Reply(status=500, body={"error": {"message": "x", "type": "server_error"}}))
        try:
            backend = VENDOR["openai"].backend(server, retry_attempts="3")
        except LLMConfigError:
            return  # refused where it was built: the fix
        async with LLMManager(**{**FAST, "retry_attempts": None}) as manager:
            assert await manager.register_backend(backend)
            with pytest.raises(LLMError):
                await manager.generate(request())
    assert server.count("/chat/completions") >= 1


async def test_out_of_range_sampling_settings_are_never_sent() -> None:
    async with FakeOpenAI() as server:
        with contextlib.suppress(LLMError):
            backend = VENDOR["openai"].backend(server, max_tokens=-5, temperature=9.0)
            async with LLMManager(**FAST) as manager:
                await manager.register_backend(backend)
                await manager.generate(request())
    assert server.count("/chat/completions") == 0


# -- the smaller ones --------------------------------------------------------------------------------------------------


def http_pool(backend: LLMBackend) -> Any:
    """The httpx2 client a Gemini backend hands its SDK (an internal: one line to fix if it moves)."""
    return backend._http  # type: ignore[attr-defined]


async def test_gemini_cleanup_closes_its_http_pool_even_when_the_sdk_client_fails_to_close() -> None:
    async with FakeGemini() as server:
        backend = VENDOR["gemini"].backend(server)
        assert isinstance(backend, GeminiBackend) and await backend.initialize()
        await backend.generate(request())
        assert open_connections(server) == 1
        pool = http_pool(backend)

        async def failing_aclose() -> None:
            raise RuntimeError("aclose failed")

        backend._client.aio.aclose = failing_aclose  # type: ignore[attr-defined]
        with contextlib.suppress(RuntimeError):
            await backend.cleanup()
        assert pool.is_closed
        await wait_closed(server)
    assert server.count("generateContent") == 1


async def test_two_gemini_streams_interleaved_in_one_task_each_keep_their_own_response() -> None:
    """Stream A fails (malformed chunk) while stream B, opened after it in the same task, is still being read: B
    must end whole, and neither leaves a connection busy."""
    async with FakeGemini() as server:
        server.enqueue(StreamReply([*text_chunks("A1", "A2"), "data: {not json\r\n\r\n"], delay=0.05))
        backend = VENDOR["gemini"].backend(server)
        assert await backend.initialize()
        try:
            a, b = backend.stream(request("a")), backend.stream(request("b"))
            first_a, first_b = await anext(a), await anext(b)
            assert first_a == TextDelta("A1") and first_b == TextDelta("echo:")
            with pytest.raises(LLMError):
                async for _ in a:
                    pass
            rest = [event async for event in b]
            done = rest[-1]
            assert isinstance(done, ResponseDone) and done.response.content == "echo: b"
            pool = http_pool(backend)._transport._pool
            busy = [c for c in pool.connections if not c.is_idle()]
        finally:
            await backend.cleanup()
    assert busy == []
    assert server.count("streamGenerateContent") == 2


async def test_gemini_streams_through_the_manager_alternately_and_gathered_keep_their_own_responses() -> None:
    """The same invariant through `manager.stream`, read one event at a time in turn, and as concurrent tasks: each
    failed stream closes its own connection and no other, each whole stream ends whole."""
    async with FakeGemini() as server:
        backend = VENDOR["gemini"].backend(server)
        async with LLMManager(**FAST) as manager:
            await manager.register_backend(backend)
            for _ in range(2):
                server.enqueue(StreamReply([*text_chunks("A1", "A2"), "data: {not json\r\n\r\n"], delay=0.02))
            streams = [manager.stream(request(name), fallback=False) for name in ("a", "b", "c")]
            ends: list[Any] = [None] * 3
            while any(end is None for end in ends):
                for i, stream in enumerate(streams):
                    if ends[i] is None:
                        try:
                            event = await anext(stream)
                        except LLMError as exc:
                            ends[i] = exc
                        else:
                            ends[i] = event if isinstance(event, ResponseDone) else None
            assert [type(end).__name__ for end in ends] == ["LLMStreamError", "LLMStreamError", "ResponseDone"]
            assert ends[2].response.content == "echo: c"

            async def whole(name: str) -> str:
                return "".join([event.text async for event in manager.stream(request(name))
                                if isinstance(event, TextDelta)])

            assert await asyncio.gather(*(whole(f"g{i}") for i in range(4))) == [f"echo: g{i}" for i in range(4)]
            pool = http_pool(backend)._transport._pool
            assert [c for c in pool.connections if not c.is_idle()] == []
    assert server.count("streamGenerateContent") == 7


THREE_SHARED_ID = [
    {"type": "message_start", "message": {"model": "claude-haiku-4-5", "id": "msg_x", "type": "message",
                                          "role": "assistant", "content": [], "stop_reason": None,
                                          "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}},
    *[event for i in range(3) for event in (
        {"type": "content_block_start", "index": i,
         "content_block": {"type": "tool_use", "id": "toolu_same", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": i,
         "delta": {"type": "input_json_delta", "partial_json": json.dumps({"i": i})}},
        {"type": "content_block_stop", "index": i})],
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


async def test_claude_streams_three_tool_use_blocks_sharing_an_id_as_generate_does() -> None:
    whole = {"id": "msg_x", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
             "content": [{"type": "tool_use", "id": "toolu_same", "name": "f", "input": {"i": i}} for i in range(3)],
             "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 9}}
    async with FakeClaude() as server:
        server.enqueue(Reply(body=whole), StreamReply(claude_sse(THREE_SHARED_ID)))
        backend = VENDOR["claude"].backend(server)
        assert isinstance(backend, ClaudeBackend) and await backend.initialize()
        try:
            generated = await backend.generate(request())
            events = [event async for event in backend.stream(request())]
        finally:
            await backend.cleanup()
    done = events[-1]
    assert isinstance(done, ResponseDone)
    assert [call.arguments for call in generated.tool_calls] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [call.arguments for call in done.response.tool_calls] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert server.count("/v1/messages") == 2
    assert CLAUDE_KEY not in repr(done.response.tool_calls)


def test_an_option_of_earlier_releases_is_an_error_naming_it_and_the_options_that_exist() -> None:
    with pytest.raises(LLMError) as caught:
        LLMManager(breaker_threshold=2)
    message = str(caught.value)
    assert "breaker_threshold" in message
    assert "breaker_failure_rate" in message and "breaker_min_calls" in message


async def test_ask_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        env = clean_env(SCOUT_OPENAI_API_KEY=OPENAI_KEY, SCOUT_OPENAI_BASE_URL=server.base_url)
        read_end, write_end = os.pipe()
        os.close(read_end)  # `| head` that has already exited
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "llm", "ask", " ".join(["word"] * 20_000), cwd=tmp_path, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=write_end, stderr=asyncio.subprocess.PIPE)
        finally:
            os.close(write_end)
        started = time.monotonic()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    text = stderr.decode()
    assert "Traceback" not in text and "BrokenPipeError" not in text, text[-2000:]
    assert process.returncode == 141  # 128 + SIGPIPE: what a command that SIGPIPE ended reports
    assert time.monotonic() - started < 30
    assert server.count("/chat/completions") == 1
