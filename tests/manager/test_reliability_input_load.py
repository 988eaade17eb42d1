"""RELIABILITY.md scenarios 22-27 where they touch the manager: bad input, secrets, and load.

Bad input costs 0 requests, no retry, no fallback and leaves the breaker alone. The canary key never shows in any
text the manager produces. 1,000 concurrent calls with 10% injected faults all end typed, and leave no task, no
connection and no extra objects behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import traceback
from typing import Any

import pytest

from llm.backends.deepseek import DeepSeekBackend
from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest, LLMResponse
from llm.errors import LLMAllBackendsFailedError, LLMError, LLMValidationError
from llm.manager import LLMManager
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import Delay, Reply, Reset
from tests.manager.helpers import FAST, VENDOR, gen_count, managed, open_connections, other_tasks, request

INVALID = [
    (LLMRequest(messages=[]), "messages"),
    (LLMRequest(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    (LLMRequest(messages=[{"role": "user", "content": 42}]), "messages[0].content"),
    (request(temperature=2.5), "temperature"),
    (request(max_tokens=0), "max_tokens"),
    (request(max_tokens=-1), "max_tokens"),
    (request(extra_params={"top_p": 1.5}), "extra_params.top_p"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
@pytest.mark.parametrize(("bad", "field"), INVALID, ids=[field for _, field in INVALID])
async def test_s22_invalid_request_zero_requests(bad: LLMRequest, field: str, stream: bool) -> None:
    """S22: an LLMValidationError (an LLMError and a ValueError) naming the field; 0 requests anywhere, no retry, no
    fallback, breaker untouched."""
    async with managed("openai", "deepseek") as (manager, servers):
        with pytest.raises(LLMValidationError) as caught:
            if stream:
                async for _ in manager.stream_generate(bad):
                    pass
            else:
                await manager.generate(bad)
        health = manager.get_all_health_status()
    assert isinstance(caught.value, ValueError) and caught.value.field == field
    assert [len(server.requests) for server in servers] == [0, 0]
    assert all(h.error_count == 0 and h.requests == 0 and h.breaker_state == "closed" for h in health.values())


async def test_s22_temperature_checked_against_the_target_vendor() -> None:
    """Anthropic accepts temperature in [0, 1]: 1.5 is rejected locally when Claude goes first."""
    async with managed("claude", "openai") as (manager, (claude, openai)):
        with pytest.raises(LLMValidationError, match="temperature"):
            await manager.generate(request(temperature=1.5))
        assert (await manager.generate(request(temperature=1.5), "openai", fallback=False)).content == "echo: hi"
    assert len(claude.requests) == 0 and openai.count("/chat") == 1


async def test_s23_huge_prompts_and_unicode_pass_unchanged_invalid_utf8_rejected() -> None:
    text = "héllo wörld 👋 中文 العربية \u202e\u200d " + "x" * 1_000_000
    async with managed("openai") as (manager, (server,)):
        response = await manager.generate(request(text))
        with pytest.raises(LLMValidationError, match="UTF-8"):
            await manager.generate(request("bad \udcff bytes"))
    assert server.requests[0].body["messages"][0]["content"] == text
    assert response.content == f"echo: {text}" and server.count("/chat") == 1


CANARY = "sk-canary-SECRET"


async def test_s24_canary_key_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    """S24: the key never appears in repr/str of the manager, backends, configs, requests, responses, errors,
    tracebacks, health or status, nor in DEBUG logs (ours and the SDKs')."""
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAI(api_key=CANARY) as good, FakeOpenAI() as wrong_key:
        manager = LLMManager(**FAST)
        backends = [OpenAIBackend(LLMConfig("openai", "gpt-4.1-mini", api_key=CANARY, base_url=good.base_url)),
                    DeepSeekBackend(LLMConfig("deepseek", "deepseek-chat", api_key=CANARY + "2",
                                              base_url=wrong_key.base_url))]
        for backend in backends:
            assert await manager.register_backend(backend)
        response = await manager.generate(request())
        chunks = [chunk async for chunk in manager.stream_generate(request())]
        good.enqueue(*(VENDOR["openai"].error_reply(500, {}) for _ in range(3)))
        with pytest.raises(LLMAllBackendsFailedError) as caught:
            await manager.generate(request())
        await manager.check_health()
        texts = [repr(manager), str(manager.get_llm_status()), repr(manager.get_all_health_status()),
                 *(repr(b) for b in backends), *(repr(b.config) for b in backends), repr(request()),
                 repr(response), str(chunks), str(caught.value), repr(caught.value.exceptions),
                 "".join(traceback.format_exception(caught.value)), caplog.text]
        await manager.cleanup()
    assert [type(e).__name__ for e in caught.value.exceptions] == ["LLMServerError", "LLMAuthenticationError"]
    assert caplog.text  # the logs were captured at DEBUG
    assert not [text for text in texts if CANARY in text]


@pytest.mark.parametrize("kind", ["openai", "claude", "gemini"])
async def test_s25_keys_travel_only_in_headers(kind: str) -> None:
    key = VENDOR[kind].api_key
    async with managed(kind) as (manager, (server,)):
        await manager.generate(request())
        await manager.check_health()
    for recorded in server.requests:
        assert key not in recorded.path and key not in str(recorded.query) and key not in str(recorded.body)
        assert any(key in value for value in recorded.headers.values())


async def test_s26_a_request_cannot_redirect_a_backend() -> None:
    """S26: base_url comes from settings only: a request naming another host is rejected locally (0 requests), and a
    URL-looking model override is only a model name, sent to the configured host."""
    async with managed("openai") as (manager, (server,)):
        for extra in ({"base_url": "http://evil.example/v1"}, {"api_base": "http://evil.example"}):
            with pytest.raises(LLMValidationError, match="extra_params"):
                await manager.generate(request(extra_params=extra))
        assert server.count("/chat") == 0
        await manager.generate(request(extra_params={"model_name_override": "http://evil.example/v1"}))
    assert server.count("/chat") == 1 and server.requests[0].body["model"] == "http://evil.example/v1"


def _faulty_script(rng: random.Random, count: int) -> list[Any]:
    """`count` replies, 10% of them faults (500, 503 and 429 with a short Retry-After, reset, 400)."""
    def error(status: int, **headers: str) -> Reply:
        return VENDOR["openai"].error_reply(status, headers)

    faults = [lambda: error(500), lambda: error(503, **{"retry-after-ms": "5"}),
              lambda: error(429, **{"retry-after-ms": "5"}), Reset, lambda: error(400)]
    return [rng.choice(faults)() if rng.random() < 0.1 else Delay(0) for _ in range(count)]


async def _load(calls: int) -> tuple[list[Any], float, tuple[int, int]]:
    rng = random.Random(27)
    # max_concurrency: 1,000 simultaneous connects overflow the fake server's listen backlog (128); the per-backend
    # limit is the setting a deployment uses for exactly that.
    async with managed("openai", "deepseek", timeout=30, max_concurrency=100,
                       backend_options={"timeout": 10}) as (manager, (primary, secondary)):
        primary.enqueue(*_faulty_script(rng, calls))
        secondary.enqueue(*_faulty_script(rng, calls))
        start = time.monotonic()
        results = await asyncio.gather(*(manager.generate(request(f"q{i}")) for i in range(calls)),
                                       return_exceptions=True)
        elapsed = time.monotonic() - start
        await manager.cleanup()
        await asyncio.sleep(0.05)
        open_after = (open_connections(primary), open_connections(secondary))
        counts = (gen_count("openai", primary), gen_count("deepseek", secondary))
        assert other_tasks() == set()
    logging.getLogger(__name__).info("%d calls in %.2fs, requests %s, open after %s", calls, elapsed, counts,
                                     open_after)
    return results, elapsed, open_after


TRACKED_MODULES = ("llm", "openai", "httpx2", "httpcore2", "anyio", "asyncio", "aiohttp", "tenacity")


def _live_objects() -> dict[str, int]:
    """Live objects per type, for types of our package, the SDK, its transport and asyncio."""
    gc.collect()
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        module = type(obj).__module__
        if isinstance(module, str) and module.split(".")[0] in TRACKED_MODULES:
            name = f"{module}.{type(obj).__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


async def test_s27_thousand_concurrent_calls_with_faults() -> None:
    """S27: 1,000 concurrent calls, 10% faults on both backends: each ends with a response or a typed error, none
    hangs, no task or connection is left open, and live objects return to their baseline."""
    logging.disable(logging.CRITICAL)  # the log capture would otherwise keep thousands of records alive
    try:
        await _load(100)  # warm-up: imports, SDK caches
        baseline = _live_objects()
        results, elapsed, open_after = await _load(1000)
    finally:
        logging.disable(logging.NOTSET)
    kinds = {type(result).__name__ for result in results}
    answered = sum(isinstance(result, LLMResponse) for result in results)
    assert all(isinstance(result, LLMResponse | LLMError) for result in results), kinds
    assert answered >= 900, kinds  # the rest: 400s (never failed over) or faults that hit both backends
    assert open_after == (0, 0) and elapsed < 20, elapsed
    del results
    grown = {name: n - baseline.get(name, 0) for name, n in _live_objects().items() if n - baseline.get(name, 0) > 10}
    assert grown == {}
