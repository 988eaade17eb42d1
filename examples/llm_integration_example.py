"""scout-llm end to end: generation, backend switching, streaming, health, error handling, templates and the
LLM-powered GapFinder agent, on whatever backends are configured (see README, "Configuration").

Run: python examples/llm_integration_example.py     (exits non-zero if any step fails)
"""

from __future__ import annotations

import asyncio
import sys
import time

from agents.base import AgentInput
from agents.gap_finder import GapFinderInput
from agents.gap_finder_enhanced import EnhancedGapFinderAgent
from llm.base import LLMError, LLMRateLimitError, LLMRequest, LLMTimeoutError
from llm.manager import LLMManager, get_llm_manager, initialize_llm_backends
from llm.utils import AgentPromptTemplates


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


async def basic_generation(manager: LLMManager) -> None:
    step("Basic generation")
    request = LLMRequest(messages=[{"role": "user", "content": "What is artificial intelligence?"}],
                         temperature=0.7, max_tokens=200)
    response = await manager.generate(request)
    print(f"[{response.backend_type} / {response.model}] {response.content.strip()[:300]}")
    print(f"tokens: {response.usage.get('total_tokens', 'N/A')}, time: {response.response_time:.2f}s")


async def backend_switching(manager: LLMManager) -> None:
    step("Backend switching")
    request = LLMRequest(messages=[{"role": "user", "content": "Say hello in five words."}], max_tokens=30)
    for name in manager.get_available_backends():
        response = await manager.generate(request, backend_type=name)
        print(f"{name:>9}: {response.content.strip()[:80]}")


async def streaming(manager: LLMManager) -> None:
    step("Streaming")
    request = LLMRequest(messages=[{"role": "user", "content": "Name three uses of market research."}],
                         max_tokens=120)
    chunks = 0
    async for chunk in manager.stream_generate(request):
        print(chunk, end="", flush=True)
        chunks += 1
    print(f"\n({chunks} chunks)")
    if chunks == 0:
        raise RuntimeError("the stream produced no text")


def health(manager: LLMManager) -> None:
    step("Health")
    for name, status in manager.get_all_health_status().items():
        print(f"{name:>9}: healthy={status.is_healthy} errors={status.error_count} "
              f"avg={status.avg_response_time:.2f}s breaker={status.breaker_state}")
    info = manager.get_llm_status()
    print(f"backends={info['backends']} healthy={info['healthy_backends']} default={info['default_backend']}")


async def error_handling(manager: LLMManager) -> None:
    step("Error handling")
    try:
        await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}], temperature=9.0))
    except ValueError as exc:  # LLMValidationError: rejected before any network call
        print(f"invalid request rejected locally: {exc}")
    try:
        await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}]), backend_type="nonexistent")
    except LLMRateLimitError:
        print("rate limited")
    except LLMTimeoutError:
        print("timed out")
    except LLMError as exc:
        print(f"typed error: {exc}")


async def templates(manager: LLMManager) -> None:
    step("Prompt templates")
    prompt = AgentPromptTemplates.market_analysis(pain_points=["Manual processes", "High costs"],
                                                  market_context="SaaS industry")
    messages = prompt.to_messages()
    print(f"system: {messages[0]['content'][:70]}...")
    response = await manager.generate(LLMRequest(messages=messages, max_tokens=300))
    print(f"analysis: {response.content.strip()[:200]}")


async def enhanced_agent(manager: LLMManager) -> None:
    step("Enhanced GapFinder agent")
    gap_input = GapFinderInput(
        validated_pain_points=[
            {"description": "Manual inventory tracking wastes hours every week", "severity": "high"},
            {"description": "Small shops cannot afford enterprise ERP software", "severity": "medium"},
        ],
        market_context="Small business software",
        analysis_scope="comprehensive",
    )
    agent = EnhancedGapFinderAgent()
    agent._llm_manager = manager
    result = await agent.execute(AgentInput(data=gap_input, metadata={}))
    if not result.success:
        raise RuntimeError(f"agent failed: {result.error}")
    print(f"Found {len(result.result.market_gaps)} market gaps in {result.execution_time:.1f}s")
    for gap in result.result.market_gaps[:3]:
        print(f"- {gap.gap_description[:90]} (score {gap.opportunity_score:.0f})")
    print(f"Key insights: {result.result.result['key_insights']}")
    if not result.result.market_gaps:
        raise RuntimeError("a valid input must yield market gaps")


async def main() -> int:
    started = time.monotonic()
    await initialize_llm_backends()
    manager = get_llm_manager()
    if not manager.get_available_backends():
        print("No LLM backends available: set SCOUT_OPENAI_API_KEY (or another key) or start Ollama.",
              file=sys.stderr)
        return 3
    print(f"backends: {manager.get_available_backends()} (default {manager.get_default_backend()})")
    try:
        await basic_generation(manager)
        await backend_switching(manager)
        await streaming(manager)
        health(manager)
        await error_handling(manager)
        await templates(manager)
        await enhanced_agent(manager)
    except Exception as exc:  # the example reports any failure and exits non-zero
        print(f"\nFAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await manager.cleanup()
    print(f"\nAll steps passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
