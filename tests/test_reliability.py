"""RELIABILITY.md scenarios 1-15 ("Retries" and "Fallback, breaker, health"), each against fake vendor servers with the
real SDK clients, asserting the requests the servers counted, the error type and the timing bound.

Streaming (16-21), bad input (22-23), secrets (24-26) and load (27) are in tests/manager/test_reliability_streams.py and
tests/manager/test_reliability_input_load.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
)
from llm.manager import LLMCircuitOpenError, LLMDeadlineExceededError, LLMManager
from tests.fakes.recordings import read_json, split_stream
from tests.fakes.server import Delay, Hang, Reply, Reset, StreamReply
from tests.manager.helpers import (
    VENDOR,
    SlowModelsOpenAI,
    backend_for,
    gen_count,
    managed,
    other_tasks,
    request,
)

STAINLESS = ["openai", "claude"]  # the vendors whose SDK sends x-stainless-retry-count


def err(status: int, kind: str = "openai", **headers: str) -> Reply:
    return VENDOR[kind].error_reply(status, headers)


async def answer(manager: LLMManager, stream: bool, **kwargs: Any) -> str:
    if stream:
        return "".join([chunk async for chunk in manager.stream_generate(request(), **kwargs)])
    return (await manager.generate(request(), **kwargs)).content


# -- Retries (one backend) --------------------------------------------------------------------------------------------


async def test_s01_retry_after_honoured_exactly_three_requests() -> None:
    """S1: 429 + Retry-After: 1 twice, then 200: 3 requests (not 9), ~2 s, SDK retry counter always 0."""
    async with managed("openai", timeout=10) as (manager, (server,)):
        server.enqueue(err(429, **{"retry-after": "1"}), err(429, **{"retry-after": "1"}))
        start = time.monotonic()
        response = await manager.generate(request())
        elapsed = time.monotonic() - start
    assert response.content == "echo: hi"
    assert server.count("/chat/completions") == 3
    assert 2.0 <= elapsed < 2.5, elapsed
    gaps = [b - a for a, b in zip(server.requests.times, server.requests.times[1:], strict=False)]
    assert all(1.0 <= gap < 1.15 for gap in gaps), gaps  # Retry-After plus at most 5% jitter
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0", "0"]


async def test_s01_recorded_anthropic_429s_then_stream() -> None:
    """S1 on Anthropic with the SDK's own recording (429, 429, then a 200 stream); Retry-After scaled to 50 ms."""
    first, second, last = read_json("anthropic/anthropic_sdk__rate_limit_429_then_stream.json")
    replies = [Reply(429, r["response"]["body"], {**r["response"]["headers"], "retry-after-ms": "50"})
               for r in (first, second)]
    async with managed("claude") as (manager, (server,)):
        server.enqueue(*replies, StreamReply(split_stream(last["response"]["body"].encode())))
        start = time.monotonic()
        text = "".join([chunk async for chunk in manager.stream_generate(request())])
        elapsed = time.monotonic() - start
    assert text == "[12345,67890]"
    assert server.count("/v1/messages") == 3
    assert 0.1 <= elapsed < 1.0, elapsed  # two 50 ms waits honoured; no SDK retry on top
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0", "0"]


async def test_s02_retry_after_above_cap_alone_raises_at_once() -> None:
    """S2: Retry-After 300 s (cap 60 s), no other backend: one request, LLMRateLimitError(retry_after=300), no sleep."""
    async with managed("openai") as (manager, (server,)):
        server.enqueue(err(429, **{"retry-after": "300"}))
        start = time.monotonic()
        with pytest.raises(LLMRateLimitError) as caught:
            await manager.generate(request())
        elapsed = time.monotonic() - start
    assert caught.value.retry_after == 300 and caught.value.backend == "openai"
    assert server.count("/chat/completions") == 1
    assert elapsed < 0.5, elapsed


async def test_s02_retry_after_above_cap_falls_back_immediately() -> None:
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(err(429, **{"retry-after": "300"}))
        start = time.monotonic()
        response = await manager.generate(request())
        elapsed = time.monotonic() - start
    assert response.backend_type == "deepseek"
    assert (primary.count("/chat/completions"), secondary.count("/chat/completions")) == (1, 1)
    assert elapsed < 0.5, elapsed


@pytest.mark.parametrize(("header", "low", "high"), [
    ("soon", 0.0, 0.15),  # garbage: ignored, the 10 ms backoff applies
    ("0.3", 0.3, 0.45),  # seconds
])
async def test_s01_retry_after_forms(header: str, low: float, high: float) -> None:
    async with managed("openai") as (manager, (server,)):
        server.enqueue(err(429, **{"retry-after": header}))
        start = time.monotonic()
        await manager.generate(request())
        elapsed = time.monotonic() - start
    assert server.count("/chat") == 2 and low <= elapsed < high, elapsed


async def test_s01_retry_after_http_date() -> None:
    from email.utils import formatdate

    async with managed("openai") as (manager, (server,)):
        server.enqueue(err(503, **{"retry-after": formatdate(time.time() + 1.5, usegmt=True)}))
        start = time.monotonic()
        await manager.generate(request())
        elapsed = time.monotonic() - start
    assert server.count("/chat") == 2 and 0.5 <= elapsed < 1.9, elapsed  # the date has one-second resolution


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
@pytest.mark.parametrize("kind", STAINLESS)
async def test_s03_retryable_status_then_success(kind: str, status: int, stream: bool) -> None:
    """S3: each retryable status, then 200: exactly 2 requests and a clean answer."""
    async with managed(kind) as (manager, (server,)):
        server.enqueue(err(status, kind))
        text = await answer(manager, stream)
    assert "hi" in text
    assert gen_count(kind, server) == 2
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0"]


@pytest.mark.parametrize("kind", STAINLESS)
async def test_s03_should_retry_false_is_not_retried(kind: str) -> None:
    async with managed(kind) as (manager, (server,)):
        server.enqueue(err(503, kind, **{"x-should-retry": "false"}))
        with pytest.raises(LLMServerError) as caught:
            await manager.generate(request())
    assert caught.value.status_code == 503 and caught.value.retryable is False
    assert gen_count(kind, server) == 1


CLIENT_ERRORS = [(400, LLMBadRequestError), (401, LLMAuthenticationError), (403, LLMAuthenticationError),
                 (404, LLMNotFoundError), (422, LLMBadRequestError)]


@pytest.mark.parametrize(("status", "error"), CLIENT_ERRORS)
@pytest.mark.parametrize("kind", STAINLESS)
async def test_s04_client_error_one_request_fast(kind: str, status: int, error: type[Exception]) -> None:
    """S4: one request, the typed error, well under 100 ms (client warmed up first: no retry, no backoff)."""
    async with managed(kind) as (manager, (server,)):
        await manager.generate(request())
        server.enqueue(err(status, kind))
        start = time.monotonic()
        with pytest.raises(error) as caught:
            await manager.generate(request())
        elapsed = time.monotonic() - start
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert gen_count(kind, server) == 2
    assert elapsed < 0.1, elapsed


@pytest.mark.parametrize(("status", "error"), CLIENT_ERRORS)
async def test_s04_only_auth_and_not_found_fall_back(status: int, error: type[Exception]) -> None:
    """S4: 400/422 never fall back (they would fail everywhere); 401/403/404 may."""
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(err(status))
        if status in (400, 422):
            with pytest.raises(error):
                await manager.generate(request())
            assert secondary.count("/chat/completions") == 0
        else:
            assert (await manager.generate(request())).backend_type == "deepseek"
            assert secondary.count("/chat/completions") == 1
    assert primary.count("/chat/completions") == 1
    assert manager.get_backend_health("openai") is None  # cleaned up on exit


@pytest.mark.parametrize("kind", STAINLESS)
async def test_s05_quota_is_distinct_marks_backend_out_and_falls_back(kind: str) -> None:
    """S5: an exhausted quota: 1 request, a quota error (not plain rate limiting), a long cooldown, fallback."""
    quota = VENDOR[kind].quota_reply
    assert quota is not None
    async with managed(kind, "deepseek", quota_cooldown=3600) as (manager, (primary, secondary)):
        primary.enqueue(quota)
        first = await manager.generate(request())
        health = manager.get_backend_health(kind)
        second = await manager.generate(request())
    assert first.backend_type == second.backend_type == "deepseek"
    assert health is not None and health.breaker_state == "open"
    assert health.open_until is not None and health.open_until - time.time() > 3000
    assert [a["outcome"] for a in first.metadata["attempts"]] == ["LLMQuotaExceededError", "ok"]
    assert [a["outcome"] for a in second.metadata["attempts"]] == ["skipped: circuit open", "ok"]
    assert gen_count(kind, primary) == 1 and secondary.count("/chat/completions") == 2


async def test_s05_quota_alone_raises_quota_error_after_one_request() -> None:
    async with managed("openai") as (manager, (server,)):
        server.enqueue(VENDOR["openai"].quota_reply)  # type: ignore[arg-type]
        with pytest.raises(LLMQuotaExceededError) as caught:
            await manager.generate(request())
        with pytest.raises(LLMCircuitOpenError) as skipped:
            await manager.generate(request())
    assert caught.value.retryable is False and server.count("/chat/completions") == 1
    assert skipped.value.retry_after is not None and skipped.value.retry_after > 3000


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_s06_no_listener_retried_then_typed_connection_error() -> None:
    """S6: a port with no listener: every attempt is made, then a typed LLMConnectionError with the cause chained."""
    async with managed("openai", backend_options={"base_url": f"http://127.0.0.1:{_closed_port()}/v1"},
                       retry_attempts=3) as (manager, _):
        start = time.monotonic()
        with pytest.raises(LLMConnectionError) as caught:
            await manager.generate(request())
        elapsed = time.monotonic() - start
        health = manager.get_backend_health("openai")
    assert health is not None and health.requests == 3 and health.error_count == 3
    assert caught.value.__cause__ is not None and caught.value.backend == "openai"
    assert not isinstance(caught.value, ConnectionError)
    assert elapsed < 0.5, elapsed


async def test_s06_reset_before_headers_retried_then_fallback() -> None:
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(Reset(), Reset(), Reset())
        response = await manager.generate(request())
        alone_start = time.monotonic()
        primary.enqueue(Reset(), Reset(), Reset())
        with pytest.raises(LLMConnectionError) as caught:
            await manager.generate(request(), "openai", fallback=False)
        alone = time.monotonic() - alone_start
    assert response.backend_type == "deepseek"
    assert [a["outcome"] for a in response.metadata["attempts"]] == ["LLMConnectionError"] * 3 + ["ok"]
    assert primary.count("/chat/completions") == 6 and secondary.count("/chat/completions") == 1
    assert caught.value.__cause__ is not None and alone < 0.5


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_s07_silent_server_bounded_per_attempt_and_by_deadline(stream: bool) -> None:
    """S7: a server that never answers: each attempt ends at its timeout (0.2 s); the call ends before the deadline."""
    async with managed("openai", timeout=1.5, attempt_timeout=0.2, first_chunk_timeout=0.2) as (manager, (server,)):
        server.enqueue(Hang(), Hang(), Hang())
        start = time.monotonic()
        with pytest.raises(LLMTimeoutError):
            await answer(manager, stream)
        elapsed = time.monotonic() - start
    assert server.count("/chat/completions") == 3
    assert 0.6 <= elapsed < 1.5, elapsed  # three 0.2 s attempts plus backoff; always inside the 1.5 s deadline


async def test_s08_deadline_across_retries_and_failover() -> None:
    """S8 scaled by 1/4: two backends answering 503 + Retry-After 0.5 s, deadline 1.25 s: a deadline error listing the
    attempts, and no attempt (or sleep) started that could not finish before the deadline."""
    retry = {"retry-after-ms": "500"}
    async with managed("openai", "deepseek", timeout=1.25) as (manager, (primary, secondary)):
        primary.enqueue(*(err(503, **retry) for _ in range(3)))
        secondary.enqueue(*(err(503, **retry) for _ in range(3)))
        start = time.monotonic()
        with pytest.raises(LLMDeadlineExceededError) as caught:
            await manager.generate(request())
        elapsed = time.monotonic() - start
    error = caught.value
    assert isinstance(error, LLMTimeoutError)
    assert [a["backend"] for a in error.attempts] == ["openai"] * 3 + ["deepseek"]
    assert all(a["status_code"] == 503 for a in error.attempts) and len(error.errors) == 2
    assert "4 attempt(s)" in str(error)
    assert (primary.count("/chat/completions"), secondary.count("/chat/completions")) == (3, 1)
    assert 1.0 <= elapsed <= 1.25, elapsed
    assert max(primary.requests.times + secondary.requests.times) - start < 1.25


async def test_s08_deadline_passing_inside_an_attempt() -> None:
    async with managed("openai", timeout=0.4, attempt_timeout=5) as (manager, (server,)):
        server.enqueue(Hang())
        start = time.monotonic()
        with pytest.raises(LLMDeadlineExceededError):
            await manager.generate(request())
        elapsed = time.monotonic() - start
    assert server.count("/chat/completions") == 1 and 0.4 <= elapsed < 0.6, elapsed


async def test_s09_fifty_concurrent_calls_during_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """S9: 50 concurrent calls while the backend answers 503: at most 3 requests per call, retries spread by jitter,
    the breaker opens once (here during the third wave: 110 calls at 100% failures), every call ends with the typed
    503, no task is left, and once the outage is over the backend serves again after the cooldown."""
    caplog.set_level(logging.INFO, logger="llm.manager")
    async with managed("openai", breaker_min_calls=110, breaker_cooldown=0.3, retry_delay=0.1,
                       jitter=0.5) as (manager, (server,)):
        server.enqueue(*(err(503) for _ in range(150)))
        start = time.monotonic()
        results = await asyncio.gather(*(manager.generate(request()) for _ in range(50)), return_exceptions=True)
        elapsed = time.monotonic() - start
        health = manager.get_backend_health("openai")
        assert [task.get_name() for task in other_tasks()].count("llm-manager-health") == 1
        server.script.clear()  # the outage ends
        await asyncio.sleep(0.3)
        recovered = await manager.generate(request())
    assert all(isinstance(r, LLMServerError) and r.status_code == 503 for r in results), results
    assert 110 <= server.count("/chat/completions") - 1 <= 150
    assert health is not None and health.times_opened == 1 and health.breaker_state == "open"
    sleeps = [r.args[-1] for r in caplog.records if "attempt 1 failed" in r.getMessage()]  # type: ignore[index]
    assert len(sleeps) == 50 and len(set(sleeps)) > 25  # each call picked its own backoff...
    assert min(sleeps) < 0.08 and max(sleeps) > 0.12  # ...spread over 0.05-0.15 s (0.1 s +/- 50%)
    assert elapsed < 3.0, elapsed
    assert recovered.content == "echo: hi"
    assert other_tasks() == set()


# -- Fallback, breaker, health ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_s10_primary_down_secondary_serves(stream: bool) -> None:
    """S10: the response names the backend that served and the attempt trail; the primary's failures show in health."""
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(err(500), err(500), err(500))
        if stream:
            events = [event async for event in manager.stream(request())]
            response = events[-1].response  # type: ignore[union-attr]
        else:
            response = await manager.generate(request())
        health = manager.get_backend_health("openai")
    assert response.backend_type == "deepseek" and response.content == "echo: hi"
    assert [(a["backend"], a["outcome"]) for a in response.metadata["attempts"]] == [
        ("openai", "LLMServerError")] * 3 + [("deepseek", "ok")]
    assert (primary.count("/chat/completions"), secondary.count("/chat/completions")) == (3, 1)
    assert health is not None and health.error_count == 3 and "500" in (health.last_error or "")


async def test_s10_rate_limited_primary_hands_over_at_once() -> None:
    """A 429 moves on at once when another backend can serve (no sleep on the rate-limited one)."""
    async with managed("openai", "deepseek") as (manager, (primary, secondary)):
        primary.enqueue(err(429, **{"retry-after": "2"}))
        start = time.monotonic()
        response = await manager.generate(request())
        elapsed = time.monotonic() - start
    assert response.backend_type == "deepseek" and elapsed < 0.3, elapsed
    assert (primary.count("/chat"), secondary.count("/chat")) == (1, 1)


async def test_s11_all_backends_fail_one_catchable_group() -> None:
    """S11: every backend fails: one LLMAllBackendsFailedError (an LLMError and an ExceptionGroup) with each error."""
    async with managed("openai", "deepseek", "claude") as (manager, (first, second, third)):
        first.enqueue(err(500), err(500), err(500))
        second.enqueue(err(401))
        third.enqueue(*(err(529, "claude") for _ in range(3)))
        try:
            await manager.generate(request())
        except LLMError as error:
            caught = error
    assert isinstance(caught, LLMAllBackendsFailedError) and isinstance(caught, ExceptionGroup)
    assert [(e.backend, type(e)) for e in caught.exceptions] == [  # type: ignore[attr-defined]
        ("openai", LLMServerError), ("deepseek", LLMAuthenticationError), ("claude", LLMServerError)]
    assert (first.count("/chat"), second.count("/chat"), third.count("/v1/messages")) == (3, 1, 3)


async def test_s12_unknown_backend_zero_requests() -> None:
    """S12: an unknown backend name (string or enum): LLMError "Backend not available: <name>", 0 requests."""
    from llm.base import LLMBackendType

    async with managed("openai") as (manager, (server,)):
        for name in ("gemini", LLMBackendType.GEMINI):
            with pytest.raises(LLMError, match="Backend not available: gemini"):
                await manager.generate(request(), name)
            with pytest.raises(LLMError, match="Backend not available: gemini"):
                async for _ in manager.stream_generate(request(), backend_type=name):
                    pass
    assert len(server.requests) == 0
    with pytest.raises(LLMError, match="No LLM backends available"):
        await LLMManager().generate(request())


async def test_s13_breaker_opens_skips_probes_once_and_reopens_longer() -> None:
    """S13: N=3 consecutive failures open the breaker; calls skip the backend (0 requests) while it cools down; then
    exactly one probe goes through; a failed probe reopens it for longer; a good one closes it."""
    async with managed("openai", "deepseek", retry_attempts=1, breaker_min_calls=3, breaker_cooldown=0.2,
                       breaker_cooldown_max=1.0) as (manager, (primary, secondary)):
        primary.enqueue(err(500), err(500), err(500))
        for _ in range(3):
            assert (await manager.generate(request())).backend_type == "deepseek"
        assert manager.get_backend_health("openai").breaker_state == "open"  # type: ignore[union-attr]
        skipped = await manager.generate(request())
        assert primary.count("/chat") == 3 and skipped.metadata["attempts"][0]["outcome"] == "skipped: circuit open"
        await asyncio.sleep(0.25)
        primary.enqueue(Delay(0.1, err(500)))
        probe, bystander = await asyncio.gather(manager.generate(request()), manager.generate(request()))
        assert primary.count("/chat") == 4  # one probe only; the bystander went to deepseek without touching openai
        health = manager.get_backend_health("openai")
        assert health is not None and health.breaker_state == "open" and health.times_opened == 2
        assert 0.3 < health.open_until - time.time() <= 0.4  # type: ignore[operator]  # cooldown doubled to 0.4 s
        await asyncio.sleep(0.45)
        healed = await manager.generate(request())
    assert healed.backend_type == "openai" and primary.count("/chat") == 5
    assert probe.backend_type == bystander.backend_type == "deepseek"


async def test_s13_client_errors_do_not_count_and_all_open_fails_fast() -> None:
    async with managed("openai", "deepseek", retry_attempts=1, breaker_min_calls=2, breaker_failure_rate=0.4,
                       breaker_cooldown=5) as (manager, (primary, secondary)):
        primary.enqueue(err(401), err(404), err(401))
        for _ in range(3):
            await manager.generate(request())
        assert manager.get_backend_health("openai").breaker_state == "closed"  # type: ignore[union-attr]
        primary.enqueue(err(500), err(500))
        secondary.enqueue(err(500), err(500), err(500), err(500))
        for _ in range(2):
            with pytest.raises(LLMAllBackendsFailedError):
                await manager.generate(request())
        before = (primary.count("/chat"), secondary.count("/chat"))
        start = time.monotonic()
        with pytest.raises(LLMCircuitOpenError) as caught:
            await manager.generate(request())
    assert time.monotonic() - start < 0.05 and 4 < caught.value.retry_after <= 5  # type: ignore[operator]
    assert (primary.count("/chat"), secondary.count("/chat")) == before == (5, 5)


async def test_s14_single_backend_recovers_after_cooldown() -> None:
    """S14: a short outage does not lock the only backend out: fail fast while open, then it serves again."""
    async with managed("openai", retry_attempts=1, breaker_min_calls=2, breaker_cooldown=0.2) as (manager, (server,)):
        server.enqueue(err(503), err(503))
        for _ in range(2):
            with pytest.raises(LLMServerError):
                await manager.generate(request())
        start = time.monotonic()
        with pytest.raises(LLMCircuitOpenError) as caught:
            await manager.generate(request())
        assert time.monotonic() - start < 0.05 and 0 < caught.value.retry_after <= 0.2  # type: ignore[operator]
        assert manager.get_healthy_backends() == []
        await asyncio.sleep(caught.value.retry_after)  # type: ignore[arg-type]
        response = await manager.generate(request())
        assert manager.get_healthy_backends() == ["openai"]
    assert response.content == "echo: hi" and server.count("/chat") == 3


async def test_s15_health_probes_list_models_and_never_overlap() -> None:
    """S15: background probes call the models listing (never a billed generation) and never overlap, even when a
    probe takes longer than the interval; a failed probe marks the backend unhealthy without opening its breaker."""
    async with SlowModelsOpenAI(models_delay=0.15) as server:
        manager = LLMManager(health_check_interval=0.02, health_check_timeout=1.0)
        start = time.monotonic()
        await manager.register_backend(backend_for("openai", server))
        while not server.in_flight:
            await asyncio.sleep(0.005)
        assert await manager.check_health() == {"openai": None}  # a probe is running: not started twice
        await asyncio.sleep(0.4)
        probes, elapsed = server.count("/models"), time.monotonic() - start
        assert 2 <= probes <= elapsed / 0.15 + 1, (probes, elapsed)  # one at a time: each takes 0.15 s
        assert server.count("/chat") == 0 and server.max_in_flight == 1
        health = manager.get_backend_health("openai")
        assert health is not None and health.last_probe_ok and health.last_probe_latency >= 0.15  # type: ignore[operator]
        server.models_delay = 0
        server.enqueue(*(err(500) for _ in range(100)))
        await asyncio.sleep(0.25)  # the probe in flight may still take 0.15 s; the next ones fail
        assert manager.get_healthy_backends() == []
        assert manager.get_backend_health("openai").breaker_state == "closed"  # type: ignore[union-attr]
        await manager.cleanup()
        assert not [task for task in other_tasks() if task.get_name() == "llm-manager-health"]
