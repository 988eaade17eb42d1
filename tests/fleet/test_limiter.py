"""The client-side limiter in one process (no Redis): windows, deadlines, pauses, settling, status, the estimate."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from llm.base import LLMRequest
from llm.errors import LLMRateLimitError
from llm.fleet.limiter import (
    NON_TEXT_PART_TOKENS,
    LLMLocalRateLimitError,
    RateLimit,
    RateLimiter,
    estimate_tokens,
    sanitize_pause,
)
from tests.fleet.conftest import FakeClock


def limiter_for(clock: FakeClock, **limits: RateLimit) -> RateLimiter:
    return RateLimiter(limits, clock=clock, sleep=clock.sleep)


async def test_rpm_admits_up_to_the_limit_then_waits_until_the_oldest_admission_leaves_the_window(
        clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(rpm=3))
    for _ in range(3):
        await limiter.acquire("openai", 10, 0.0)
    clock.now += 20
    permit = await limiter.acquire("OpenAI", 10, 60.0)
    assert clock.sleeps == [pytest.approx(40.001)]
    assert permit.waited == pytest.approx(40.001)
    assert clock.now == pytest.approx(1060.001)


async def test_a_wait_past_the_deadline_fails_at_once_with_retry_after(clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(rpm=1))
    await limiter.acquire("openai", 0, 1.0)
    clock.now += 15
    with pytest.raises(LLMLocalRateLimitError) as caught:
        await limiter.acquire("openai", 0, 44.0)
    error = caught.value
    assert isinstance(error, LLMRateLimitError)
    assert error.retry_after == pytest.approx(45.0)
    assert error.backend == "openai" and error.status_code is None and error.retryable is False
    assert "1 requests per 60s reached" in str(error) and "no request sent" in str(error)
    assert clock.sleeps == []  # it did not wait in vain


async def test_tpm_counts_the_estimate_and_settle_corrects_it(clock: FakeClock) -> None:
    limiter = limiter_for(clock, claude=RateLimit(tpm=1000))
    permit = await limiter.acquire("claude", 900, 0.0)
    with pytest.raises(LLMLocalRateLimitError, match="1000 tokens per 60s"):
        await limiter.acquire("claude", 200, 0.0)
    await permit.settle(300)  # the usage the vendor reported
    await limiter.acquire("claude", 700, 0.0)
    assert (await limiter.status("claude")).tokens_left == 0


async def test_settle_keeps_the_estimate_when_usage_is_unknown_or_nonsense(clock: FakeClock) -> None:
    limiter = limiter_for(clock, claude=RateLimit(tpm=1000))
    for reported in (None, -5, 2.5, True):
        permit = await limiter.acquire("claude", 100, 0.0)
        await permit.settle(reported)  # type: ignore[arg-type]
    assert (await limiter.status("claude")).tokens_left == 600


async def test_release_gives_back_tokens_and_an_unsent_release_the_request_too(clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(rpm=2, tpm=1000))
    failed = await limiter.acquire("openai", 500, 0.0)
    await failed.release()
    status = await limiter.status("openai")
    assert (status.requests_left, status.tokens_left) == (1, 1000)
    unsent = await limiter.acquire("openai", 500, 0.0)
    await unsent.release(sent=False)
    await unsent.settle(900)  # only the first of settle/release counts
    status = await limiter.status("openai")
    assert (status.requests_left, status.tokens_left) == (1, 1000)


async def test_a_request_larger_than_the_whole_tpm_is_refused_at_once_naming_the_limit(clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(tpm=1000))
    await limiter.acquire("openai", 10, 0.0)
    with pytest.raises(LLMLocalRateLimitError, match="5000 tokens.*1000 tokens per 60s") as caught:
        await limiter.acquire("openai", 5000, 100.0)  # it can never fit: no wait for an empty window
    assert caught.value.backend == "openai" and not caught.value.retryable
    assert clock.sleeps == []
    assert (await limiter.acquire("openai", 990, 0.0)).tokens == 990  # the window is as it was


async def test_tpm_waits_only_until_enough_tokens_leave_the_window(clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(tpm=1000))
    for _ in range(4):
        await limiter.acquire("openai", 250, 0.0)
        clock.now += 10
    # window: 250 at t=0, 10, 20, 30; now t=40: 500 more need the first two to leave (at t=70)
    await limiter.acquire("openai", 500, 60.0)
    assert sum(clock.sleeps) == pytest.approx(30.001, abs=0.01)


async def test_concurrent_waiters_never_exceed_the_limit_in_any_window() -> None:
    limiter = RateLimiter({"openai": RateLimit(rpm=3, window=0.2)})
    admitted: list[float] = []

    async def call() -> None:
        await limiter.acquire("openai", 1, 5.0)
        admitted.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(10)))
    assert len(admitted) == 10
    assert max_in_any_window(admitted, 0.2 - 0.002) == 3
    assert admitted[-1] - admitted[0] >= 0.6 - 0.01  # 10 admissions at 3 per 0.2 s: at least three full windows


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < window) for i, start in enumerate(times))


async def test_a_pause_holds_every_admission_then_lifts(clock: FakeClock) -> None:
    limiter = limiter_for(clock)  # no limits: pauses still apply
    assert await limiter.pause("gemini", 12.5) == 12.5
    with pytest.raises(LLMLocalRateLimitError, match="paused by a vendor Retry-After") as caught:
        await limiter.acquire("gemini", 0, 5.0)
    assert caught.value.retry_after == pytest.approx(12.5)
    await limiter.acquire("gemini", 0, 20.0)
    assert clock.sleeps == [pytest.approx(12.501)]
    await limiter.acquire("openai", 0, 0.0)  # other backends are not paused


async def test_a_shorter_pause_never_shortens_a_longer_one(clock: FakeClock) -> None:
    limiter = limiter_for(clock)
    await limiter.pause("openai", 30)
    await limiter.pause("openai", 2)
    status = await limiter.status("openai")
    assert status.paused_until is not None and status.paused_until - status.as_of == pytest.approx(30, abs=0.01)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, 0, "soon", None, "1e999"])
async def test_a_pause_refuses_numbers_that_are_not_positive_and_finite(clock: FakeClock, bad: object) -> None:
    limiter = limiter_for(clock)
    assert await limiter.pause("openai", bad) == 0.0
    await limiter.acquire("openai", 0, 0.0)
    assert (await limiter.status("openai")).paused_until is None


async def test_an_absurd_pause_is_capped(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock, sleep=clock.sleep, max_pause=120.0)
    assert await limiter.pause("openai", 10**9) == 120.0
    assert await limiter.pause("openai", "7") == 7.0  # a header value, as text
    with pytest.raises(LLMLocalRateLimitError) as caught:
        await limiter.acquire("openai", 0, 60.0)
    assert caught.value.retry_after == pytest.approx(120.0)
    assert sanitize_pause(3.5) == 3.5


async def test_status_reports_capacity_pause_and_that_state_is_local(clock: FakeClock) -> None:
    limiter = limiter_for(clock, openai=RateLimit(rpm=10, tpm=5000))
    assert limiter.snapshot("openai") is None
    await limiter.acquire("openai", 1200, 0.0)
    snap = limiter.snapshot("openai")
    assert snap is not None and (snap.requests_left, snap.tokens_left, snap.shared) == (9, 3800, False)
    await limiter.pause("openai", 5)
    status = await limiter.status("openai")
    assert (status.rpm, status.tpm, status.requests_left, status.tokens_left) == (10, 5000, 9, 3800)
    assert status.paused_until is not None and status.shared is False and limiter.shared is False
    clock.now += 60
    status = await limiter.status("openai")
    assert (status.requests_left, status.tokens_left, status.paused_until) == (10, 5000, None)


async def test_an_unlimited_backend_reports_no_capacity_figures(clock: FakeClock) -> None:
    limiter = limiter_for(clock)
    permit = await limiter.acquire("ollama", 10**6, 0.0)
    await permit.settle(5)
    status = await limiter.status("ollama")
    assert (status.rpm, status.tpm, status.requests_left, status.tokens_left) == (None, None, None, None)


async def test_set_limit_adds_and_removes_a_limit(clock: FakeClock) -> None:
    limiter = limiter_for(clock)
    limiter.set_limit("OpenAI", RateLimit(rpm=1))
    await limiter.acquire("openai", 0, 0.0)
    with pytest.raises(LLMLocalRateLimitError):
        await limiter.acquire("openai", 0, 0.0)
    limiter.set_limit("openai", None)
    await limiter.acquire("openai", 0, 0.0)


async def test_a_backend_is_limited_under_any_of_its_names(clock: FakeClock) -> None:
    limiter = limiter_for(clock, anthropic=RateLimit(rpm=1))
    assert limiter.limit("claude").rpm == 1
    permit = await limiter.acquire(" Claude ", 0, 0.0)
    assert permit.backend == "claude"
    with pytest.raises(LLMLocalRateLimitError):
        await limiter.acquire("anthropic", 0, 0.0)


@pytest.mark.parametrize("remaining", [math.nan, -3.0])
async def test_a_nonsense_deadline_means_no_time_to_wait(clock: FakeClock, remaining: float) -> None:
    limiter = limiter_for(clock, openai=RateLimit(rpm=1))
    await limiter.acquire("openai", 0, remaining)
    with pytest.raises(LLMLocalRateLimitError):
        await limiter.acquire("openai", 0, remaining)


@pytest.mark.parametrize("kwargs", [{"rpm": -1}, {"tpm": 1.5}, {"rpm": True}, {"window": 0}, {"window": math.inf}])
def test_rate_limit_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_zero_means_no_limit() -> None:
    assert RateLimit(rpm=0, tpm=0) == RateLimit()


def test_estimate_is_characters_over_four_plus_the_output_cap() -> None:
    request = LLMRequest(messages=[{"role": "user", "content": "x" * 401}], system_prompt="y" * 99, max_tokens=256)
    assert estimate_tokens(request) == 125 + 256
    assert estimate_tokens(LLMRequest(messages=[{"role": "user", "content": "abcd"}]), default_max_tokens=4096) == 4097


def test_estimate_counts_text_parts_images_tool_calls_and_tools() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    request = LLMRequest(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a" * 40},
                                         {"type": "image_url", "image_url": {"url": "data:" + "z" * 10**6}}]},
            {"role": "assistant", "content": None, "tool_calls": call},
        ],
        tools=[tool],
    )
    import json
    chars = 40 + len(json.dumps(call)) + len(json.dumps([tool]))
    assert estimate_tokens(request) == math.ceil(chars / 4) + NON_TEXT_PART_TOKENS


def test_importing_the_limiter_and_the_redis_store_loads_no_redis_client() -> None:
    import subprocess
    import sys

    probe = "import llm.fleet.limiter, llm.fleet.redis_store, sys; print('redis' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


async def test_a_waiter_cancelled_while_waiting_takes_nothing() -> None:
    limiter = RateLimiter({"openai": RateLimit(rpm=1, window=30.0)})
    await limiter.acquire("openai", 5, 0.0)
    waiter = asyncio.create_task(limiter.acquire("openai", 5, 60.0))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    usage = await limiter.store.usage("openai", 30.0)
    assert (usage.requests, usage.tokens) == (1, 5)
