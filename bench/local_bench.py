"""Measure the local backend: model load time, first-token latency, generation speed and peak memory (RSS).

Run:  .venv/bin/python bench/local_bench.py [--threads 1 2] [--runs 3] [--max-tokens 128]
(or `make bench-local`). Each thread count gets a fresh backend in a fresh subprocess, so that peak RSS is its own.
Speed is completion tokens / time from the first token to the last (decode speed). The first-token latency is from
the call to the first text chunk (prompt processing + first token; the first run also warms up), measured through
`LocalBackend.stream`, bridge included. The machine's load average is printed: on a busy core, more threads can be
much slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

PROMPT = "Write a short paragraph about why small businesses need simple inventory software."


def rss_mb() -> float:
    """The process's current resident memory, in MiB (from /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure(threads: int, runs: int, max_tokens: int, context: int) -> dict[str, Any]:
    from llm.backends.local import LocalBackend
    from llm.base import LLMConfig, LLMRequest, ResponseDone, TextDelta

    baseline = rss_mb()
    backend = LocalBackend(LLMConfig(backend_type="local", model_name=os.environ.get("SCOUT_LOCAL_MODEL_PATH", "")),
                           threads=threads, context=context)
    started = time.perf_counter()
    await backend.load()
    load_s = time.perf_counter() - started
    first_token, speed, tokens = [], [], []
    for run in range(runs):
        # A different opening each run: llama.cpp reuses a cached prompt prefix, which would hide prompt processing.
        content = f"Question {run + 1} of {runs}. {PROMPT}"
        request = LLMRequest(messages=[{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0.7)
        started = time.perf_counter()
        first = last = None
        async for event in backend.stream(request):
            if isinstance(event, TextDelta):
                last = time.perf_counter()
                first = first or last
            elif isinstance(event, ResponseDone) and first is not None and last is not None:
                completion = event.response.usage["completion_tokens"]
                first_token.append(first - started)
                tokens.append(completion)
                speed.append((completion - 1) / (last - first) if last > first else 0.0)
    await backend.cleanup()
    return {
        "threads": threads, "runs": runs, "load_s": round(load_s, 3),
        "first_token_ms_median": round(1000 * statistics.median(first_token), 1),
        "first_token_ms_max": round(1000 * max(first_token), 1),
        "tokens_per_s_median": round(statistics.median(speed), 1),
        "completion_tokens": tokens,
        "rss_baseline_mb": round(baseline, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        result = asyncio.run(measure(args.threads[0], args.runs, args.max_tokens, args.context))
        print(json.dumps(result))
        return 0
    print(f"cpus={os.cpu_count()} loadavg(1m)={os.getloadavg()[0]:.2f} prompt={PROMPT!r} max_tokens={args.max_tokens}")
    for threads in args.threads:
        child = [sys.executable, __file__, "--one", "--threads", str(threads), "--runs", str(args.runs),
                 "--max-tokens", str(args.max_tokens), "--context", str(args.context)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        print(output.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
