"""A fleet member for the multi-process tests: `python -m tests.fleet.worker '<json job>'`.

It builds its own store and limiter from the job, prints `ready`, waits for a line on stdin (so every worker starts
together), runs the job and prints one JSON object per event on stdout. Logging (the store's WARNINGs) goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from llm.fleet.limiter import LLMLocalRateLimitError, RateLimit, RateLimiter, open_state_store
from llm.fleet.store import Admission, StateStore
from llm.health.breaker import BreakerRules

RULES = BreakerRules(window=10.0, min_calls=20, failure_rate=0.5, cooldown=30.0, cooldown_max=600.0)


class Stamped:
    """Wraps a store's `admit` to bracket each admission's (server-side) time between two local clock readings."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.last = (0.0, 0.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def admit(self, *args: Any) -> Admission:
        before = time.time()
        admission = await self.store.admit(*args)
        self.last = (before, time.time())
        return admission


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


async def acquire(limiter: RateLimiter, stamped: Stamped, job: dict[str, Any]) -> None:
    """`count` acquisitions (or as many as fit in `duration` seconds), each reported with its time and sharing."""
    end = time.monotonic() + job.get("duration", 1e9)
    for _ in range(job.get("count", 10**9)):
        if time.monotonic() >= end:
            break
        start = time.monotonic()
        try:
            permit = await limiter.acquire("openai", job.get("tokens", 1), job.get("deadline", 10.0))
        except LLMLocalRateLimitError as exc:
            emit(kind="refused", t=time.time(), retry_after=exc.retry_after, took=time.monotonic() - start)
        else:
            emit(kind="admitted", t=time.time(), shared=permit.shared, took=time.monotonic() - start,
                 between=stamped.last)
        await asyncio.sleep(job.get("gap", 0.0))


async def main(job: dict[str, Any]) -> None:
    store = open_state_store(job.get("url"), prefix=job["prefix"], timeout=job.get("timeout", 0.5),
                             reconnect_interval=job.get("reconnect", 0.2)) if job.get("url") else open_state_store(None)
    stamped = Stamped(store)
    limit = RateLimit(rpm=job.get("rpm"), window=job.get("window", 60.0))
    limiter = RateLimiter({"openai": limit}, store=stamped)  # type: ignore[arg-type]
    await store.breaker_state("openai", RULES)  # connect before the start line
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for step in job["steps"]:
        if step == "acquire":
            await acquire(limiter, stamped, job)
        elif step == "open":
            record = await store.breaker_event("openai", RULES, "quota", False, job["open_for"])
            emit(kind="opened", state=record.state, shared=record.shared)
        elif step == "observe":
            record = await store.breaker_state("openai", RULES)
            emit(kind="breaker", state=record.state, open_for=record.open_for, shared=record.shared)
        elif step == "pause":
            emit(kind="paused", seconds=await limiter.pause("openai", job["pause"]))
        elif step == "wait":
            await asyncio.sleep(job["wait"])
    await limiter.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(json.loads(sys.argv[1])))
