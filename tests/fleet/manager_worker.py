"""A fleet member that calls through the real manager: `python -m tests.fleet.manager_worker '<json job>'`.

It builds an `LLMManager` whose settings name the shared Redis (`SCOUT_LLM_REDIS_URL` and friends, set on the config
object), registers a real OpenAI adapter pointed at the vendor fake the test runs (shared by every worker, so its
request count is the fleet's), prints `ready`, waits for a line on stdin (every worker starts together), runs its
steps and prints one JSON object per event. Logging (the store's WARNINGs) goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest
from llm.config import ScoutConfig
from llm.fleet.limiter import RateLimit
from llm.manager import LLMManager
from tests.fakes.openai_fake import API_KEY


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


async def call(manager: LLMManager, job: dict[str, Any]) -> None:
    start = time.monotonic()
    try:
        response = await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}]), "openai",
                                          fallback=False)
    except Exception as exc:
        emit(kind="error", error=type(exc).__name__, retry_after=getattr(exc, "retry_after", None),
             took=time.monotonic() - start)
    else:
        health = manager.get_backend_health("openai")
        emit(kind="ok", content=response.content, took=time.monotonic() - start,
             shared=health is not None and health.shared_state)


async def calls(manager: LLMManager, job: dict[str, Any]) -> None:
    end = time.monotonic() + job.get("duration", 1e9)
    for _ in range(job.get("count", 10**9)):
        if time.monotonic() >= end:
            break
        await call(manager, job)
        await asyncio.sleep(job.get("gap", 0.0))


async def main(job: dict[str, Any]) -> None:
    config = ScoutConfig()
    config.llm.redis_url = job["redis"]
    config.llm.redis_prefix = job["prefix"]
    config.llm.redis_timeout = job.get("redis_timeout", 0.5)
    policy = {"timeout": job.get("timeout", 10.0), "retry_attempts": job.get("attempts", 1), "retry_delay": 0.01,
              "breaker_min_calls": job.get("min_calls", 2), "breaker_cooldown": 30.0,
              "health_check_interval": None}
    manager = LLMManager(config, **policy)
    backend = OpenAIBackend(LLMConfig(backend_type="openai", model_name="gpt-4.1-mini", api_key=API_KEY,
                                      base_url=job["url"] + "/v1", timeout=5.0, max_tokens=16))
    assert await manager.register_backend(backend)
    limiter = manager.rate_limiter
    assert limiter is not None
    if job.get("rpm"):  # a short window, so that the test sees several windows in a few seconds
        limiter.set_limit("openai", RateLimit(rpm=job["rpm"], window=job["window"]))
    limiter.store.reconnect_interval = job.get("reconnect", 0.2)  # type: ignore[attr-defined]
    await limiter.status("openai")  # connect before the start line
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for step in job["steps"]:
        if step == "calls":
            await calls(manager, job)
        elif step == "wait":
            await asyncio.sleep(job["wait"])
        elif step == "health":
            health = manager.get_backend_health("openai")
            assert health is not None
            emit(kind="health", breaker=health.breaker_state, shared=health.shared_state,
                 paused_until=health.rate_limit.paused_until if health.rate_limit else None)
    await manager.cleanup()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(json.loads(sys.argv[1])))
