"""Interop: our OpenAI adapter against a third-party implementation of the protocol, llama-cpp-python's
OpenAI-compatible server (`python -m llama_cpp.server`, the `server` extra of llama-cpp-python, declared in our `local`
extra) running the embedded SmolLM2 model. The server is started here on a free port and stopped at the end.

Skipped only when the server's dependencies (or the model package) are not installed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest, ResponseDone, TextDelta
from llm.manager import LLMManager

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
MISSING = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"llama-cpp-python[server] not installed (no {MISSING})")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """The base URL (`.../v1`) of a llama-cpp-python server with SmolLM2, for this module."""
    from llm.backends.local import MODEL_PACKAGES, find_model_file
    from llm.errors import LLMConfigError

    try:
        model = find_model_file(next(iter(MODEL_PACKAGES)))
    except LLMConfigError as exc:
        pytest.skip(f"the embedded model is not installed: {exc}")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", "1", "--n_ctx", "1024", "--verbose", "False", "--seed", "7"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
                    pytest.fail(f"llama_cpp.server did not start: {stderr}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def backend(url: str) -> OpenAIBackend:
    config = LLMConfig(backend_type="openai", model_name="smollm2", api_key="sk-local-not-checked", base_url=url,
                       timeout=60, temperature=0.0, max_tokens=48)
    return OpenAIBackend(config)


def ask(text: str, **fields: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": text}], **fields)


async def test_generate(llama_server: str) -> None:
    async with LLMManager(health_check_interval=None, timeout=60) as manager:
        await manager.register_backend(backend(llama_server))
        response = await manager.generate(ask("Say hello."))
    assert response.content.strip()
    assert response.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "usage_unknown" not in response.metadata


async def test_stream_and_its_usage_is_never_faked(llama_server: str) -> None:
    """This server sends no usage chunk on streams (even with `stream_options.include_usage`): the usage is unknown,
    reported as such, never zeros."""
    async with LLMManager(health_check_interval=None, timeout=60) as manager:
        await manager.register_backend(backend(llama_server))
        events = [event async for event in manager.stream(ask("Say hello."))]
    texts = [event.text for event in events if isinstance(event, TextDelta)]
    done = events[-1]
    assert isinstance(done, ResponseDone) and len(texts) > 1
    assert done.response.content == "".join(texts) and done.response.content.strip()
    usage = done.response.usage
    if usage:
        assert usage["completion_tokens"] > 0
    else:
        assert done.response.metadata["usage_unknown"] is True
    assert usage != {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_max_tokens_is_honoured(llama_server: str, stream: bool) -> None:
    """OpenAI-compatible servers read `max_tokens`, not `max_completion_tokens` (llama.cpp ignored the latter: asked
    8 tokens, got hundreds). DEPENDS ON the OpenAI adapter sending `max_tokens` to compatible endpoints (issue 12,
    item 11, adapter side): until the adapter puts `max_tokens` in its parameters for this base URL, the test is
    marked xfail; once it does, the assertions below run."""
    chosen = backend(llama_server)
    params = chosen._request_params(ask("x", max_tokens=8), "smollm2", stream)
    if "max_tokens" not in params:
        pytest.xfail("the OpenAI adapter does not send max_tokens to compatible endpoints yet")
    async with LLMManager(health_check_interval=None, timeout=60) as manager:
        await manager.register_backend(chosen)
        request = ask("Tell me a long story about a dragon.", max_tokens=8)
        if stream:
            events = [event async for event in manager.stream(request)]
            final = events[-1]
            assert isinstance(final, ResponseDone)
            response = final.response
        else:
            response = await manager.generate(request)
    assert response.finish_reason == "length"
    if response.usage:
        assert response.usage["completion_tokens"] <= 8
    assert len(response.content.split()) <= 8


async def test_a_forced_tool_call(llama_server: str) -> None:
    async with LLMManager(health_check_interval=None, timeout=60) as manager:
        await manager.register_backend(backend(llama_server))
        response = await manager.generate(ask("What is the weather in Paris?", tools=[WEATHER],
                                              tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert response.finish_reason == "tool_calls"
    assert [call.name for call in response.tool_calls] == ["get_weather"]
    assert isinstance(response.tool_calls[0].arguments.get("city"), str)
    assert response.tool_calls[0].id
