"""The local backend end to end on the real model: SmolLM2-135M-Instruct through llama-cpp-python, in-process.

Marker `local`; skipped unless the library and the model are installed (`make test-local`; `make test` installs them).
Kept small: a few short answers at temperature 0 (deterministic), one thread, since other tests share the 2 cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from llm.backends.local import LocalBackend, find_model_file
from llm.base import LLMConfig, LLMRequest, ResponseDone, StreamEvent, TextDelta
from llm.config import DEFAULT_MODELS, APIConfig, LLMRoutingConfig, LLMSettings, ScoutConfig
from llm.errors import LLMConfigError, LLMContextLengthError, LLMNotFoundError, LLMValidationError
from llm.manager import LLMManager, initialize_llm_backends


def _model_file() -> Path | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        return find_model_file(DEFAULT_MODELS["local"])
    except LLMConfigError:
        return None


MODEL = _model_file()
MODEL_NAME = DEFAULT_MODELS["local"]
pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(MODEL is None, reason="llama-cpp-python or the SmolLM2 model not installed (make test-local)"),
]

COLORS = LLMRequest(messages=[{"role": "user", "content": "Name three colors."}], temperature=0, max_tokens=40)
STORY = LLMRequest(messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
                   temperature=0.8, max_tokens=3000)  # ~a minute of generation: only a stop ends it early


def make_backend(**kwargs: int) -> LocalBackend:
    return LocalBackend(LLMConfig(backend_type="local", model_name="", timeout=30), **kwargs)


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """One loaded model for the module (the backend binds to no event loop)."""
    shared = make_backend()
    yield shared
    asyncio.run(shared.cleanup())


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_generate_answers_with_usage_and_finish_reason(backend: LocalBackend) -> None:
    response = await backend.generate(COLORS)
    assert response.content.strip()
    assert (response.backend_type, response.model, response.finish_reason) == ("local", MODEL_NAME, "stop")
    usage = response.usage
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 40
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.response_time > 0


async def test_answer_and_usage_equal_the_librarys_own_non_streamed_call(backend: LocalBackend) -> None:
    import llama_cpp

    ours = await backend.generate(COLORS)
    reference_model = llama_cpp.Llama(model_path=str(MODEL), n_ctx=4096, n_threads=1, verbose=False)
    try:
        reference = reference_model.create_chat_completion(messages=COLORS.messages, temperature=0, max_tokens=40)
    finally:
        reference_model.close()
    assert ours.content == reference["choices"][0]["message"]["content"]  # type: ignore[index]
    assert ours.usage == reference["usage"]  # type: ignore[index]


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(backend: LocalBackend) -> None:
    response = await backend.generate(LLMRequest(messages=STORY.messages, temperature=0, max_tokens=5))
    assert response.finish_reason == "length" and response.usage["completion_tokens"] == 5


async def test_the_stream_carries_the_same_answer_and_usage(backend: LocalBackend) -> None:
    whole = await backend.generate(COLORS)
    events = await collect(backend.stream(COLORS))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) > 3 and all(deltas)
    assert isinstance(events[-1], ResponseDone) and not any(isinstance(e, ResponseDone) for e in events[:-1])
    done = events[-1].response
    assert done.content == "".join(deltas) == whole.content
    assert (done.usage, done.finish_reason, done.model) == (whole.usage, "stop", MODEL_NAME)
    assert "".join([chunk async for chunk in backend.stream_generate(COLORS)]) == whole.content


async def test_closing_a_stream_stops_generation(backend: LocalBackend) -> None:
    stream = backend.stream_generate(STORY)
    received = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert all(received)
    started = time.monotonic()
    response = await backend.generate(COLORS)  # queued behind the story if it were still being generated
    assert response.content and time.monotonic() - started < 5


async def test_cancelling_a_generate_call_stops_generation(backend: LocalBackend) -> None:
    task = asyncio.create_task(backend.generate(STORY))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    assert (await backend.generate(COLORS)).content
    assert time.monotonic() - started < 5


async def test_concurrent_calls_are_served_one_after_the_other(backend: LocalBackend) -> None:
    first = backend.stream_generate(STORY)
    assert await anext(first)
    second = backend.stream_generate(COLORS)
    waiting = asyncio.ensure_future(anext(second))
    await asyncio.sleep(0.5)
    assert not waiting.done(), "the second call must wait while the first one holds the model"
    await first.aclose()
    assert await asyncio.wait_for(waiting, 5)
    await second.aclose()
    answers = await asyncio.gather(*(backend.generate(COLORS) for _ in range(3)))
    assert len({answer.content for answer in answers}) == 1, "serialised calls do not disturb each other"


async def test_a_prompt_longer_than_the_context_is_a_context_length_error() -> None:
    small = make_backend(context=256)
    try:
        long = LLMRequest(messages=[{"role": "user", "content": "word " * 400}], max_tokens=5)
        with pytest.raises(LLMContextLengthError) as caught:
            await small.generate(long)
        assert (caught.value.backend, caught.value.model) == ("local", MODEL_NAME)
        assert (await small.generate(COLORS)).content, "the backend still works afterwards"
    finally:
        await small.cleanup()


async def test_model_override_must_name_this_model(backend: LocalBackend) -> None:
    stem = MODEL_NAME.removesuffix(".gguf")
    same = await backend.generate(LLMRequest(messages=COLORS.messages, temperature=0, max_tokens=3,
                                             extra_params={"model_name_override": stem}))
    assert same.model == MODEL_NAME
    with pytest.raises(LLMNotFoundError):
        await backend.generate(LLMRequest(messages=COLORS.messages, extra_params={"model_name_override": "gpt-4o"}))


async def test_tools_are_rejected_before_any_generation(backend: LocalBackend) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with pytest.raises(LLMValidationError) as caught:
        await backend.generate(LLMRequest(messages=COLORS.messages, tools=tools))
    assert caught.value.field == "tools"


async def test_health_is_the_model_file_and_the_library(backend: LocalBackend, tmp_path: Path) -> None:
    assert await backend.health_check() and backend.get_available_models() == [MODEL_NAME]
    broken_file = tmp_path / "broken.gguf"
    broken_file.write_bytes(b"not a gguf file")
    broken = LocalBackend(LLMConfig(backend_type="local", model_name=str(broken_file)))
    try:
        assert await broken.health_check(), "a health check loads nothing"
        with pytest.raises(LLMConfigError, match="could not load the GGUF model"):
            await broken.generate(COLORS)
        broken_file.unlink()
        assert not await broken.health_check()
    finally:
        await broken.cleanup()


# -- registration by initialize_llm_backends ------------------------------------------------------------------------


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def scout_config(openai_url: str | None = None, default_backend: str | None = None, **llm: Any) -> ScoutConfig:
    api = APIConfig(openai_api_key=SecretStr("sk-test"), openai_base_url=openai_url) if openai_url else APIConfig()
    return ScoutConfig(api=api, llm=LLMSettings(**{"ollama_enabled": False, "timeout": 10, **llm}),
                       llm_routing=LLMRoutingConfig(default_backend=default_backend))


async def test_with_no_key_the_local_model_is_registered_and_the_default() -> None:
    async with LLMManager(config=scout_config(), health_check_interval=None) as manager:
        await initialize_llm_backends(manager)
        assert (manager.get_available_backends(), manager.get_default_backend()) == (["local"], "local")
        response = await manager.generate(COLORS)
        assert (response.backend_type, response.model) == ("local", MODEL_NAME) and response.content


async def test_with_a_remote_backend_and_local_enabled_the_local_model_is_the_last_resort_fallback() -> None:
    config = scout_config(closed_url(), retry_attempts=1, local_threads=1, local_context=1024, local_enabled=True)
    async with LLMManager(config=config, health_check_interval=None) as manager:
        await initialize_llm_backends(manager)
        assert (manager.get_available_backends(), manager.get_default_backend()) == (["openai", "local"], "openai")
        local_backend = manager.backends["local"]
        assert isinstance(local_backend, LocalBackend)
        assert (local_backend.threads, local_backend.context, local_backend.config.max_tokens) == (1, 1024, 512)
        response = await manager.generate(COLORS)  # OpenAI's port is closed: the call fails over to the local model
        assert response.backend_type == "local" and response.content


@pytest.mark.parametrize(
    ("enabled", "wanted_default", "names", "default"),
    [(False, None, ["openai"], "openai"), (None, "local", ["openai", "local"], "local")],
    ids=["SCOUT_LOCAL_ENABLED=false", "SCOUT_LLM_DEFAULT_BACKEND=local"],
)
async def test_settings_switch_the_local_model_off_or_make_it_the_default(
    enabled: bool | None, wanted_default: str | None, names: list[str], default: str
) -> None:
    config = scout_config(closed_url(), local_enabled=enabled, default_backend=wanted_default)
    async with LLMManager(config=config, health_check_interval=None) as manager:
        await initialize_llm_backends(manager)
        assert (manager.get_available_backends(), manager.get_default_backend()) == (names, default)
