"""Hostile answers and the manager's logic (issue 12, items 4, 9 and 11's unknown usage).

OpenAI-protocol answers come from the raw-asyncio hostile server, so any value can sit in any field; the manager's
logic runs with the real adapters against the vendor fakes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.backends.openai import OpenAIBackend
from llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResponse, ResponseDone, StreamEvent, TextDelta
from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMDeadlineExceededError,
    LLMError,
    LLMServerError,
    LLMStreamError,
)
from llm.manager import LLMManager
from tests.fakes.hostile import HostileServer, Raw, openai_answer, openai_chunks
from tests.fakes.server import Delay
from tests.manager.helpers import FAST, VENDOR, gen_count, managed, request

KEY = "sk-test-hostile"


def openai_backend(server: HostileServer, **config: Any) -> OpenAIBackend:
    values: dict[str, Any] = {"timeout": 3, **config}
    return OpenAIBackend(LLMConfig(backend_type="openai", model_name="m", api_key=KEY,
                                   base_url=server.url + "/v1", **values))


async def one_call(server: HostileServer, stream: bool, **policy: Any) -> LLMResponse:
    """One manager call (three attempts allowed) to an OpenAI backend on the hostile server."""
    async with LLMManager(**{**FAST, **policy}) as manager:
        await manager.register_backend(openai_backend(server))
        if not stream:
            return await manager.generate(request())
        events = [event async for event in manager.stream(request())]
        done = events[-1]
        assert isinstance(done, ResponseDone)
        return done.response


# -- item 4: a chunk whose text is not text ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [12345, ["a"], {"t": 1}, True])
async def test_a_first_chunk_with_non_text_content_is_a_typed_server_error(content: Any) -> None:
    async with HostileServer(openai_chunks({"content": content})) as server:
        with pytest.raises(LLMServerError) as caught:
            await one_call(server, True)
    assert "malformed" in str(caught.value)
    assert server.count("/chat") == 3  # a malformed answer is the vendor's fault: retried, as a 5xx is


async def test_a_later_chunk_with_non_text_content_is_a_stream_error_with_the_text_so_far() -> None:
    async with HostileServer(openai_chunks({"content": "Hel"}, {"content": 12345})) as server:
        with pytest.raises(LLMStreamError) as caught:
            await one_call(server, True)
    assert caught.value.partial_content == "Hel" and server.count("/chat") == 1


@pytest.mark.parametrize("content", [12345, ["a"]])
async def test_a_whole_answer_with_non_text_content_is_a_typed_server_error(content: Any) -> None:
    async with HostileServer(openai_answer(content)) as server:
        with pytest.raises(LLMServerError):
            await one_call(server, False)


class OddStreamBackend(LLMBackend):
    """A custom backend whose stream yields a TextDelta holding a number."""

    def __init__(self, first_ok: bool) -> None:
        super().__init__(LLMConfig(backend_type="ollama", model_name="odd"))
        self.first_ok = first_ok

    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response("x", "odd", finish_reason="stop")

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        if self.first_ok:
            yield TextDelta("ok")
        yield TextDelta(12345)  # type: ignore[arg-type]
        yield ResponseDone(self._create_response("ok", "odd", finish_reason="stop"))

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        yield "x"

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return []


@pytest.mark.parametrize("first_ok", [False, True], ids=["first-event", "later-event"])
async def test_the_manager_relay_types_a_custom_backends_odd_event(first_ok: bool) -> None:
    async with LLMManager(**FAST) as manager:
        await manager.register_backend(OddStreamBackend(first_ok))
        with pytest.raises(LLMStreamError) as caught:
            [text async for text in manager.stream_generate(request())]
    assert "TextDelta whose text is a int" in str(caught.value)
    assert caught.value.partial_content == ("ok" if first_ok else "")


CHUNK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
FUNCTION = st.fixed_dictionaries({}, optional={"name": CHUNK_VALUES, "arguments": CHUNK_VALUES}) | CHUNK_VALUES
TOOL_CALL = st.fixed_dictionaries({}, optional={"index": CHUNK_VALUES, "id": CHUNK_VALUES, "function": FUNCTION})
DELTA = st.fixed_dictionaries({}, optional={
    "content": CHUNK_VALUES, "role": CHUNK_VALUES, "refusal": CHUNK_VALUES,
    "tool_calls": st.lists(TOOL_CALL | CHUNK_VALUES, max_size=2) | CHUNK_VALUES,
})
CHUNK = st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries(
    {"index": st.just(0), "delta": DELTA | CHUNK_VALUES},
    optional={"finish_reason": CHUNK_VALUES}), max_size=2) | CHUNK_VALUES},
    optional={"usage": CHUNK_VALUES | st.fixed_dictionaries({"prompt_tokens": CHUNK_VALUES,
                                                             "completion_tokens": CHUNK_VALUES}),
              "model": CHUNK_VALUES}) | CHUNK_VALUES


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(CHUNK, min_size=1, max_size=4))
async def test_any_stream_chunks_give_events_or_an_llm_error(chunks: list[Any]) -> None:
    """Property: whatever JSON values a server puts in its stream chunks, the caller gets events and a response, or
    an LLMError -- never TypeError, AttributeError, ... ."""
    frames = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    async with HostileServer(Raw(200, headers={"content-type": "text/event-stream"}, chunks=frames)) as server:
        try:
            response = await one_call(server, True, retry_attempts=1)
        except LLMError:
            return
    assert isinstance(response.content, str)
    assert all(isinstance(call.arguments, dict) for call in response.tool_calls)


# -- item 11 (shared accumulator): unknown usage ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_usage_a_server_does_not_report_is_unknown_not_zero(stream: bool) -> None:
    reply = openai_chunks({"content": "hi"}) if stream else openai_answer("hi")  # no usage anywhere
    async with HostileServer(reply) as server:
        response = await one_call(server, stream)
    assert response.content == "hi"
    assert response.usage == {} and response.metadata["usage_unknown"] is True
    assert response.usage.get("total_tokens", 0) == 0  # the callers' idiom keeps working


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_usage_a_server_reports_stays_a_count(stream: bool) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    reply = openai_chunks({"content": "hi"}, usage=usage) if stream else openai_answer("hi", usage=usage)
    async with HostileServer(reply) as server:
        response = await one_call(server, stream)
    assert response.usage == usage and "usage_unknown" not in response.metadata


# -- item 9: the manager's logic ------------------------------------------------------------------------------------


async def test_a_fallbacks_401_after_the_backoff_budget_is_reported_not_a_timeout() -> None:
    """At 9875685 the first backend's spent backoff budget turned the fallback's 401 into a deadline error."""
    async with managed("openai", "claude", timeout=1.5, min_attempt_time=0.05) as (manager, (first, second)):
        first.enqueue(*(VENDOR["openai"].error_reply(503, {"retry-after": "1"}) for _ in range(3)))
        second.enqueue(VENDOR["claude"].error_reply(401, {}))
        start = time.monotonic()
        with pytest.raises(LLMAllBackendsFailedError) as caught:
            await manager.generate(request())
        elapsed = time.monotonic() - start
    assert not isinstance(caught.value, LLMDeadlineExceededError)
    kinds = [type(exc) for exc in caught.value.exceptions]
    assert kinds == [LLMServerError, LLMAuthenticationError], kinds
    assert gen_count("claude", second) == 1 and elapsed < 1.5


async def test_a_fallbacks_400_alone_is_reported_as_itself() -> None:
    async with managed("openai", "claude", timeout=1.5, min_attempt_time=0.05,
                       fallback_order=("claude",)) as (manager, (first, second)):
        first.enqueue(*(VENDOR["openai"].error_reply(503, {"retry-after": "1"}) for _ in range(3)))
        second.enqueue(VENDOR["claude"].error_reply(400, {}))
        with pytest.raises(LLMError) as caught:
            await manager.generate(request())
    assert not isinstance(caught.value, LLMDeadlineExceededError)
    assert any(isinstance(exc, LLMBadRequestError) for exc in getattr(caught.value, "exceptions", [caught.value]))


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_waiting_for_a_concurrency_slot_is_not_part_of_the_attempt(stream: bool) -> None:
    """6 calls, max_concurrency=1, each answer 0.15 s, attempt timeout 0.4 s: at 9875685 five timed out in the
    queue and opened the breaker of a healthy backend, with 2 requests sent. Now all six are served in turn."""
    async with managed("openai", max_concurrency=1, attempt_timeout=0.4, first_chunk_timeout=0.4,
                       breaker_min_calls=3) as (manager, (server,)):
        server.enqueue(*(Delay(0.15) for _ in range(6)))
        if stream:
            async def consume() -> str:
                return "".join([t async for t in manager.stream_generate(request())])
            results = await asyncio.gather(*(consume() for _ in range(6)))
        else:
            results = [r.content for r in await asyncio.gather(*(manager.generate(request()) for _ in range(6)))]
        health = manager.get_backend_health("openai")
    assert results == ["echo: hi"] * 6
    assert server.count("/chat") == 6
    assert health is not None and health.breaker_state == "closed" and health.error_count == 0


async def test_a_slot_wait_that_outlasts_the_deadline_is_the_deadlines_error() -> None:
    async with managed("openai", max_concurrency=1, timeout=0.5, breaker_min_calls=1) as (manager, (server,)):
        server.enqueue(Delay(2.0))
        results = await asyncio.gather(manager.generate(request()), manager.generate(request()),
                                       return_exceptions=True)
        health = manager.get_backend_health("openai")
    assert all(isinstance(r, LLMDeadlineExceededError) for r in results), results
    assert server.count("/chat") == 1  # the queued call sent nothing
    # the real attempt was cut by the caller's deadline, the queued one sent nothing: neither is the backend's failure
    assert health is not None and health.error_count == 0 and health.breaker_state == "closed"


async def test_an_empty_but_complete_stream_is_an_answer_as_generate_gives_it() -> None:
    """At 9875685 a stream that ended empty was retried three times (three billed calls) while `generate` of the
    same answer succeeded. Now both give the empty answer after one request."""
    async with HostileServer(openai_chunks()) as server:
        streamed = await one_call(server, True)
    async with HostileServer(openai_answer("")) as server2:
        whole = await one_call(server2, False)
    assert (streamed.content, streamed.finish_reason) == (whole.content, whole.finish_reason) == ("", "stop")
    assert server.count("/chat") == server2.count("/chat") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_missing_finish_reason_is_the_same_verdict_on_both_paths(stream: bool) -> None:
    """At 9875685 a missing finish reason raised on streams and was "stop" on generate. Now both raise (a stream
    that already delivered text as LLMStreamError, which is never retried)."""
    reply = openai_chunks({"content": "hi"}, finish_reason=None) if stream else openai_answer("hi",
                                                                                              finish_reason=None)
    async with HostileServer(reply) as server:
        with pytest.raises(LLMError) as caught:
            await one_call(server, stream, retry_attempts=1)
    assert isinstance(caught.value, LLMStreamError if stream else LLMServerError)
    assert "finish" in str(caught.value) and server.count("/chat") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_an_openai_refusal_is_a_content_filter_finish_with_its_text(stream: bool) -> None:
    refusal = "I can't help with that."
    if stream:
        reply = openai_chunks({"role": "assistant", "content": None, "refusal": refusal})
    else:
        reply = openai_answer(None)
        reply.body["choices"][0]["message"]["refusal"] = refusal  # type: ignore[index]
    async with HostileServer(reply) as server:
        response = await one_call(server, stream)
    assert response.finish_reason == "content_filter" and response.metadata["refusal"] == refusal
    assert response.content == ""


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_bogus_usage_numbers_are_not_counts(stream: bool) -> None:
    """Every number from outside is checked: a negative, infinite or textual token count is not reported usage."""
    usage = {"prompt_tokens": -5, "completion_tokens": "many", "total_tokens": 1e309}
    reply = openai_chunks({"content": "hi"}, usage=usage) if stream else openai_answer("hi", usage=usage)
    reply.chunks = [c.replace("Infinity", "1e309") for c in reply.chunks] if reply.chunks else None
    if not stream:
        reply.body = json.dumps(reply.body).replace("Infinity", "1e309")
    async with HostileServer(reply) as server:
        response = await one_call(server, stream)
    assert response.content == "hi"
    assert response.usage == {} and response.metadata["usage_unknown"] is True
