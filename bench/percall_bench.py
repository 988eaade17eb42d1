"""The CPU one manager call costs in scout-llm's own layers: a backend that answers at once (no I/O, no SDK), so what
is measured is validation, the failover chain, admission, the attempt, the stream relay and the accounting.

    python bench/percall_bench.py                        # medians of 7 rounds: generate, and a 20-chunk stream
    PYTHONPATH=../other python bench/percall_bench.py    # the same against another checkout's llm/

Run it against two checkouts interleaved to compare them on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

from llm.base import LLMBackend, LLMBackendType, LLMConfig, LLMRequest, LLMResponse
from llm.manager import LLMManager


class Canned(LLMBackend):
    """Answers every request at once: "hello", or 20 chunks of "tok "."""

    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response("hello", self.resolve_model(request), finish_reason="stop")

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        for _ in range(20):
            yield "tok "

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return ["m"]


async def measure(calls: int, rounds: int) -> tuple[float, float]:
    """Median CPU microseconds per generate and per 20-chunk stream."""
    async with LLMManager() as manager:
        await manager.register_backend(Canned(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m")),
                                       is_default=True)
        request = LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=20)
        for _ in range(300):
            await manager.generate(request)
        generate, stream = [], []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(calls):
                await manager.generate(request)
            generate.append((time.process_time() - start) / calls * 1e6)
            start = time.process_time()
            for _ in range(calls // 10):
                async for _chunk in manager.stream_generate(request):
                    pass
            stream.append((time.process_time() - start) / (calls // 10) * 1e6)
        return statistics.median(generate), statistics.median(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    generate, stream = asyncio.run(measure(args.calls, args.rounds))
    print(f"generate {generate:.1f} us  stream20 {stream:.1f} us")


if __name__ == "__main__":
    main()
