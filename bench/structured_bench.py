"""Measure what a JSON-schema grammar costs the embedded model: generation speed with and without `response_format`.

Run:  PYTHONPATH=. .venv/bin/python bench/structured_bench.py [--runs 3] [--max-tokens 120]
One thread, temperature 0, the same prompt both ways (the GapFinder act stage's schema, `agents.gap_finder_enhanced`
`ActReply`, for the grammar). Speed is completion tokens / wall time of the whole generate call (prompt processing
included), through `LocalBackend.generate`; the first run of each mode warms up and is left out. Report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

PROMPT = ("Find market gaps for small retail software: inventory is tracked by hand and tools are expensive. "
          "Give each gap a description, a segment, a solution, competition, opportunity and market size.")


async def measure(runs: int, max_tokens: int) -> dict[str, dict[str, Any]]:
    from agents.gap_finder_enhanced import ActReply
    from llm.backends.local import LocalBackend
    from llm.base import LLMConfig, LLMRequest

    backend = LocalBackend(LLMConfig(backend_type="local", model_name="", timeout=120))
    await backend.initialize()
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode, response_format in (("free text", None), ("JSON-schema grammar", ActReply)):
            speeds, seconds = [], []
            for run in range(runs + 1):
                request = LLMRequest(messages=[{"role": "user", "content": PROMPT}], temperature=0,
                                     max_tokens=max_tokens, response_format=response_format)
                start = time.perf_counter()
                try:
                    response = await backend.generate(request)
                    tokens = response.usage.get("completion_tokens", 0)
                except Exception as exc:  # a structured failure still generated: count the raw answer's length
                    tokens = max_tokens
                    print(f"  {mode}: {type(exc).__name__}")
                elapsed = time.perf_counter() - start
                if run:  # run 0 warms up
                    speeds.append(tokens / elapsed)
                    seconds.append(elapsed)
            results[mode] = {"tokens_per_s": statistics.median(speeds), "seconds": statistics.median(seconds)}
    finally:
        await backend.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    results = asyncio.run(measure(args.runs, args.max_tokens))
    print(f"embedded model, {args.runs} runs each, max_tokens {args.max_tokens}, load {os.getloadavg()[0]:.2f}")
    for mode, figures in results.items():
        print(f"  {mode:22s} {figures['tokens_per_s']:6.1f} tokens/s  ({figures['seconds']:.2f} s per call)")


if __name__ == "__main__":
    main()
