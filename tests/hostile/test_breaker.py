"""The failure-rate breaker and quota lockouts.

Unit tests drive `CircuitBreaker` on a fake clock; the acceptance tests drive the manager with the real OpenAI adapter
against the raw-asyncio hostile server: 5,000 calls at 200 concurrent under 20% random faults, and a total outage.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest
from llm.errors import (
    RETRY_AFTER_CEILING,
    LLMCircuitOpenError,
    LLMError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
)
from llm.health.breaker import CircuitBreaker
from llm.manager import LLMManager
from tests.fakes.gemini_fake import QUOTA_BODY
from tests.fakes.hostile import Faulty, HostileServer, Raw, openai_answer
from tests.fakes.server import Reply
from tests.manager.helpers import FAST, managed

KEY = "sk-test-hostile"
SERVER_ERROR = Raw(500, {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kwargs: Any) -> CircuitBreaker:
    values: dict[str, Any] = {"window": 10.0, "min_calls": 10, "failure_rate": 0.5, "cooldown": 5.0,
                              "cooldown_max": 40.0, **kwargs}
    return CircuitBreaker(**values, clock=clock)


def outcomes(b: CircuitBreaker, pattern: str) -> None:
    """Feed outcomes: "x" a counted failure, "." a success."""
    for mark in pattern:
        ticket = b.admit()
        assert ticket is not None
        if mark == "x":
            b.record_failure(ticket)
        else:
            b.record_success(ticket)


def test_noise_below_the_rate_never_opens() -> None:
    """Noise below the failure rate (40% here, two failures in a row every time) never opens the breaker."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(200):
        outcomes(b, "..xx.")  # 40% failures, two in a row every time
        clock.now += 0.01
    assert b.state == "closed" and b.times_opened == 0
    assert b.failure_ratio() == pytest.approx(0.4)


def test_the_rate_opens_it_only_with_enough_calls_in_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, "xxxxxxxxx")  # 9 failures: 100%, but fewer than min_calls
    assert b.state == "closed"
    outcomes(b, "x")
    assert b.state == "open" and b.times_opened == 1 and b.retry_in() == 5.0


def test_old_outcomes_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, "." * 100)
    clock.now += 11  # the successes are older than the window now
    outcomes(b, "x" * 10)
    assert b.state == "open"  # an outage opens it within one window, whatever came before


def test_half_open_lets_one_probe_and_backs_off() -> None:
    clock = Clock()
    b = breaker(clock)
    outcomes(b, "x" * 10)
    assert b.admit() is None
    clock.now += 5
    probe = b.admit()
    assert probe is not None and probe.probe and b.admit() is None  # one probe at a time
    b.record_failure(probe)
    assert b.state == "open" and b.retry_in() == 10.0  # cooldown doubled
    clock.now += 10
    probe = b.admit()
    assert probe is not None
    b.record_success(probe)
    assert b.state == "closed" and b.failure_ratio() is None  # a fresh window


def test_a_probe_success_never_undoes_a_quota_trip() -> None:
    """A half-open probe's success does not lift a quota lockout that came in while the probe was out."""
    clock = Clock()
    b = breaker(clock)
    outcomes(b, "x" * 10)
    clock.now += 5
    probe = b.admit()
    assert probe is not None
    b.trip(None, 3600.0)  # an attempt admitted earlier comes back: quota exhausted
    b.record_success(probe)
    assert b.state == "open" and b.admit() is None and b.retry_in() == 3600.0
    clock.now += 3600
    assert b.state == "closed" and b.admit() is not None


@pytest.mark.parametrize(("given", "expected"), [
    (math.nan, None), (-5.0, None), (math.inf, None), (1e11, RETRY_AFTER_CEILING),
    (10**400, RETRY_AFTER_CEILING), ("3", None), (2.5, 2.5),
])
def test_every_retry_after_an_error_carries_is_finite_and_capped(given: Any, expected: float | None) -> None:
    error = LLMRateLimitError("slow down", retry_after=given)
    assert error.retry_after == expected
    error.retry_after = given  # set afterwards (as an adapter may): checked the same way
    assert error.retry_after == expected


QUOTA_429 = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": None,
                       "code": "insufficient_quota"}}


@pytest.mark.parametrize("retry_after", ["99999999999", "1e309", "nan", "-30", "inf"])
async def test_openai_quota_lockout_is_capped_whatever_retry_after_says(retry_after: str) -> None:
    """`insufficient_quota` with an absurd or malformed Retry-After locks the backend out for at most
    `quota_cooldown_max`."""
    async with HostileServer(Raw(429, QUOTA_429, {"retry-after": retry_after})) as server:
        config = LLMConfig(backend_type="openai", model_name="m", api_key=KEY, base_url=server.url + "/v1", timeout=2)
        async with LLMManager(**{**FAST, "quota_cooldown": 2.0, "quota_cooldown_max": 5.0}) as manager:
            await manager.register_backend(OpenAIBackend(config))
            with pytest.raises(LLMQuotaExceededError) as caught:
                await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
            health = manager.get_backend_health("openai")
            with pytest.raises(LLMCircuitOpenError) as refused:
                await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
    assert caught.value.retry_after is None or math.isfinite(caught.value.retry_after)
    assert health is not None and health.breaker_state == "open"
    assert health.open_until is not None and 1.5 <= health.open_until - time.time() <= 5.0
    assert refused.value.retry_after is not None and refused.value.retry_after <= 5.0
    assert server.count("/chat") == 1


@pytest.mark.parametrize("delay", ["1e309s", "99999999999s", "nans", "-5s"])
async def test_gemini_quota_retry_delay_is_sanitised(delay: str) -> None:
    """Gemini's `retryDelay` (absurd, infinite or malformed) gives a finite, capped lockout."""
    body: dict[str, Any] = {"error": {**QUOTA_BODY["error"], "details": [
        *(d for d in QUOTA_BODY["error"]["details"] if not d["@type"].endswith("RetryInfo")),
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    async with managed("gemini", quota_cooldown=1.0, quota_cooldown_max=3.0) as (manager, (server,)):
        server.enqueue(Reply(429, body))
        with pytest.raises(LLMQuotaExceededError) as caught:
            await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
        health = manager.get_backend_health("gemini")
    retry_after = caught.value.retry_after
    assert retry_after is None or (math.isfinite(retry_after) and 0 <= retry_after <= RETRY_AFTER_CEILING)
    assert health is not None and health.open_until is not None and health.open_until - time.time() <= 3.0


# -- acceptance: noise and outage, through the manager ------------------------------------------------------------


async def run_load(server: HostileServer, calls: int, concurrency: int, **policy: Any) -> dict[str, int]:
    config = LLMConfig(backend_type="openai", model_name="m", api_key=KEY, base_url=server.url + "/v1", timeout=10)
    outcome = {"ok": 0, "refused": 0, "failed": 0}
    async with LLMManager(health_check_interval=None, timeout=20, retry_delay=0.001, **policy) as manager:
        await manager.register_backend(OpenAIBackend(config))
        request = LLMRequest(messages=[{"role": "user", "content": "x"}])
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                try:
                    await manager.generate(request)
                    outcome["ok"] += 1
                except LLMCircuitOpenError:
                    outcome["refused"] += 1
                except LLMError:
                    outcome["failed"] += 1

        await asyncio.gather(*(one() for _ in range(calls)))
        health = manager.get_backend_health("openai")
        assert health is not None
        outcome["times_opened"] = health.times_opened
    return outcome


async def test_twenty_percent_faults_at_200_concurrent_refuse_at_most_two_percent() -> None:
    """5,000 calls, 200 at a time, 20% of requests answered 500: the rate breaker (defaults) refuses <= 2% of them."""
    faults = Faulty(SERVER_ERROR, 0.2, openai_answer)
    async with HostileServer(faults) as server:
        start = time.monotonic()
        outcome = await run_load(server, 5000, 200)
        elapsed = time.monotonic() - start
    assert outcome["ok"] + outcome["refused"] + outcome["failed"] == 5000
    assert outcome["refused"] <= 100, outcome
    assert outcome["ok"] >= 4900, outcome  # three attempts each: a call fails only if all three do (0.8%)
    assert server.count("/chat") >= 5000
    print(f"20% faults: {outcome} in {elapsed:.2f}s, {server.count('/chat')} requests")


async def test_a_total_outage_opens_the_breaker_within_one_window() -> None:
    """Every request fails: the breaker opens before one window (1 s here) has passed, after which calls are refused
    with no request sent."""
    async with HostileServer(SERVER_ERROR) as server:
        config = LLMConfig(backend_type="openai", model_name="m", api_key=KEY, base_url=server.url + "/v1", timeout=5)
        async with LLMManager(health_check_interval=None, timeout=10, retry_delay=0.001, breaker_window=1.0,
                              breaker_cooldown=30) as manager:
            await manager.register_backend(OpenAIBackend(config))
            request = LLMRequest(messages=[{"role": "user", "content": "x"}])
            start = time.monotonic()
            opened_after = None
            while time.monotonic() - start < 1.0:
                await asyncio.gather(*(manager.generate(request) for _ in range(10)), return_exceptions=True)
                if manager.get_backend_health("openai").breaker_state == "open":  # type: ignore[union-attr]
                    opened_after = time.monotonic() - start
                    break
            sent = server.count("/chat")
            results = await asyncio.gather(*(manager.generate(request) for _ in range(50)), return_exceptions=True)
    assert opened_after is not None and opened_after < 1.0
    assert 20 <= sent <= 60  # min_calls (20) failures, plus the retries already in flight
    assert all(isinstance(r, LLMCircuitOpenError) for r in results)
    assert server.count("/chat") == sent
    assert isinstance(results[0], LLMServerError)  # the circuit-open error is a server error, not retryable
    assert not results[0].retryable  # type: ignore[union-attr]
