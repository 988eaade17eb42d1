"""One contender in its own process: run the loads against the fake server and print one JSON object.

    python -m bench.client --contender scout --url http://127.0.0.1:PORT [--dialects openai anthropic] ...
    python -m bench.client --contender scout --url ... --open-streams 1000     # the memory load only

Loads, per dialect, after a warm-up (which also checks every answer):
    seq      sequential calls: latency of each
    stream   sequential streams: time to the first text chunk (TTFC) and to the end
    c64/c256 that many calls in flight at once (workers pulling from one counter), after a burst that fills the pool:
             latency of each and throughput (calls / wall time)
CPU per request is this process's CPU time (user + system) over the load divided by its calls; peak RSS is the
process's high-water mark at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.contenders import DIALECTS, HOLD_MODEL, Contender, make

EXPECTED_CHUNKS = 20


def rss_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies_ns: list[int], wall: float, cpu: float, calls: int) -> dict[str, float]:
    ms = [v / 1e6 for v in latencies_ns]
    return {"median_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99), "throughput_rps": calls / wall,
            "cpu_ms_per_req": cpu / calls * 1000, "calls": calls}


async def timed_stream(contender: Contender) -> tuple[int, int, int]:
    """(ns to the first text chunk, ns to the end, chunks) of one stream."""
    start = time.perf_counter_ns()
    first = 0
    count = 0
    async for _ in contender.stream():
        if not count:
            first = time.perf_counter_ns()
        count += 1
    return first - start, time.perf_counter_ns() - start, count


async def warm_up(contender: Contender, calls: int) -> None:
    for _ in range(calls):
        if not await contender.call():
            raise RuntimeError("empty answer")
    for _ in range(max(3, calls // 10)):
        chunks = (await timed_stream(contender))[2]
        if chunks != EXPECTED_CHUNKS:
            raise RuntimeError(f"stream gave {chunks} chunks, expected {EXPECTED_CHUNKS}")


async def sequential(contender: Contender, calls: int) -> dict[str, float]:
    latencies = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        start = time.perf_counter_ns()
        await contender.call()
        latencies.append(time.perf_counter_ns() - start)
    return summary(latencies, time.perf_counter() - wall, time.process_time() - cpu, calls)


async def streams(contender: Contender, count: int) -> dict[str, float]:
    firsts, totals = [], []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        first, total, _ = await timed_stream(contender)
        firsts.append(first)
        totals.append(total)
    result = summary(totals, time.perf_counter() - wall, time.process_time() - cpu, count)
    ttfc = [v / 1e6 for v in firsts]
    result.update(ttfc_median_ms=statistics.median(ttfc), ttfc_p99_ms=percentile(ttfc, 0.99))
    return result


async def concurrent(contender: Contender, level: int, calls: int) -> dict[str, float]:
    await asyncio.gather(*(contender.call() for _ in range(level)))  # fill the pool: warm connections
    latencies: list[int] = []
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter_ns()
            await contender.call()
            latencies.append(time.perf_counter_ns() - start)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(level)))
    return summary(latencies, time.perf_counter() - wall, time.process_time() - cpu, calls)


async def throughput_loads(contender: Contender, args: argparse.Namespace) -> dict[str, Any]:
    await warm_up(contender, args.warmup)
    loads: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "seq": lambda: sequential(contender, args.seq),
        "stream": lambda: streams(contender, args.streams),
    }
    for level in args.concurrency:
        loads[f"c{level}"] = lambda level=level: concurrent(contender, level, args.calls)  # type: ignore[misc]
    return {name: await load() for name, load in loads.items()}


async def open_streams(contender: Contender, count: int) -> dict[str, float]:
    """Open `count` streams at once, wait for the first chunk of each, measure memory, close them all."""
    await warm_up(contender, 5)
    before = rss_mb()["rss_mb"]
    generators = [contender.stream(HOLD_MODEL) for _ in range(count)]
    start = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(anext(gen) for gen in generators))
        opened = time.perf_counter() - start
        memory = rss_mb()
    finally:
        await asyncio.gather(*(gen.aclose() for gen in generators), return_exceptions=True)
    return {"streams": count, "open_s": opened, "rss_before_mb": before, "rss_open_mb": memory["rss_mb"],
            "kb_per_stream": (memory["rss_mb"] - before) * 1024 / count, "peak_rss_mb": memory["peak_rss_mb"]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"contender": args.contender, "dialects": {}}
    for dialect in args.dialects:
        contender = await make(args.contender, dialect, args.url)
        try:
            if args.open_streams:
                result["dialects"][dialect] = {"open": await open_streams(contender, args.open_streams)}
            else:
                result["dialects"][dialect] = await throughput_loads(contender, args)
        finally:
            await contender.close()
    result.update(rss_mb())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contender", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--dialects", nargs="+", default=list(DIALECTS))
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seq", type=int, default=300)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000, help="calls per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--open-streams", type=int, default=0, help="run only the open-streams memory load")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
