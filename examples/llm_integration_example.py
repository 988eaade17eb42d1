"""scout-llm end to end: generation, backend switching, streaming, health, error handling, templates and the
LLM-powered GapFinder agent, on whatever backends are configured (see README, "Configuration"). With no key set it
runs offline on the embedded model, a 135M stand-in: fast, and no judge of quality.

Run: python examples/llm_integration_example.py     (`make demo`; exits non-zero if any step fails)

Every answer says which backend and model produced it (`response.backend_type`, `response.model`): after a
failover that is not the backend that was asked.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import Mapping

from agents.base import AgentInput
from agents.gap_finder import GapFinderInput, MarketGap
from agents.gap_finder_enhanced import EnhancedGapFinderAgent
from llm.base import LLMError, LLMRequest, LLMResponse, ResponseDone, TextDelta
from llm.manager import LLMManager, get_llm_manager, initialize_llm_backends
from llm.utils import AgentPromptTemplates

WIDTH = 100
INDENT = "  "


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def show(text: str, max_lines: int = 6, indent: str = INDENT) -> None:
    """Print model text wrapped to the page, its own line breaks kept; cut after `max_lines` lines, never mid-word."""
    lines: list[str] = []
    for paragraph in text.strip().splitlines():
        if paragraph.strip():
            lines += textwrap.wrap(paragraph.strip(), WIDTH - len(indent)) or [""]
    if not lines:
        lines = ["(empty answer)"]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + " [...]"]
    print("\n".join(indent + line for line in lines))


def one_line(text: str, width: int = 70) -> str:
    """Text on one line, shortened at a word boundary."""
    return textwrap.shorten(" ".join(text.split()) or "(empty answer)", width, placeholder=" [...]")


class StreamPrinter:
    """Prints streamed text as it arrives, wrapped to the page at word boundaries (a word is held until it ends)."""

    def __init__(self) -> None:
        self.column = 0
        self.word = ""

    def feed(self, text: str) -> None:
        for char in text:
            if char.isspace():
                self._flush_word()
                if char == "\n" and self.column > len(INDENT):
                    print(end="\n")
                    self.column = 0
            else:
                self.word += char

    def close(self) -> None:
        self._flush_word()
        print(flush=True)

    def _flush_word(self) -> None:
        if not self.word:
            return
        if self.column == 0:
            print(INDENT, end="")
            self.column = len(INDENT)
        elif self.column + 1 + len(self.word) > WIDTH:
            print("\n" + INDENT, end="")
            self.column = len(INDENT)
        else:
            print(" ", end="")
            self.column += 1
        print(self.word, end="", flush=True)
        self.column += len(self.word)
        self.word = ""


def answered_by(response: LLMResponse) -> str:
    return f"{response.backend_type} / {response.model}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def tokens(usage: Mapping[str, object]) -> str:
    total = usage.get("total_tokens")
    return f"{total} tokens" if total is not None else "usage not reported"


async def basic_generation(manager: LLMManager) -> None:
    step("Basic generation")
    question = "What is artificial intelligence?"
    response = await manager.generate(LLMRequest(messages=[{"role": "user", "content": question}],
                                                 temperature=0.7, max_tokens=200))
    print(f"Q: {question}")
    show(response.content)
    print(f"-> answered by {answered_by(response)} in {response.response_time:.2f} s, {tokens(response.usage)}")


async def backend_switching(manager: LLMManager) -> None:
    step("Backend switching")
    request = LLMRequest(messages=[{"role": "user", "content": "Say hello in five words."}], max_tokens=30)
    for name in manager.get_available_backends():
        response = await manager.generate(request, backend_type=name)
        note = "" if response.backend_type == name else f" (after a failover from {name})"
        print(f"asked {name:<9} answered by {answered_by(response)}{note}: {one_line(response.content, 60)}")


async def streaming(manager: LLMManager) -> None:
    step("Streaming")
    request = LLMRequest(messages=[{"role": "user", "content": "Name three uses of market research."}],
                         max_tokens=120)
    started = time.monotonic()
    first: float | None = None
    chunks = 0
    done: LLMResponse | None = None
    printer = StreamPrinter()
    async for event in manager.stream(request):
        if isinstance(event, TextDelta) and event.text:
            first = first if first is not None else time.monotonic() - started
            printer.feed(event.text)
            chunks += 1
        elif isinstance(event, ResponseDone):
            done = event.response
    printer.close()
    if done is None or chunks == 0:
        raise RuntimeError("the stream produced no text")
    print(f"-> answered by {answered_by(done)}: {chunks} chunks, first after {first or 0.0:.2f} s, "
          f"{time.monotonic() - started:.2f} s in all, {tokens(done.usage)}")


def health(manager: LLMManager) -> None:
    step("Health")
    for name, status in manager.get_all_health_status().items():
        state = "healthy" if status.is_healthy else "UNHEALTHY"
        print(f"{name:<9} {state}, breaker {status.breaker_state}, {plural(status.requests, 'request')}, "
              f"{plural(status.error_count, 'error')}, {status.avg_response_time:.2f} s on average")
        if status.last_error:
            print(f"{'':<9} last error: {one_line(status.last_error, 80)}")
    print(f"default backend: {manager.get_default_backend()}")


async def error_handling(manager: LLMManager) -> None:
    step("Error handling")
    try:
        await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}], temperature=9.0))
    except ValueError as exc:  # LLMValidationError: rejected before any network call
        print(f"temperature=9.0 is refused before any network call: {type(exc).__name__}: {exc}")
    try:
        await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}]), backend_type="nonexistent")
    except LLMError as exc:
        print(textwrap.fill(f"an unknown backend is a typed error: {type(exc).__name__}: {exc}", WIDTH,
                            subsequent_indent=INDENT))


async def templates(manager: LLMManager) -> None:
    step("Prompt templates")
    prompt = AgentPromptTemplates.market_analysis(pain_points=["Manual processes", "High costs"],
                                                  market_context="SaaS industry")
    print(f"system prompt: {one_line(prompt.system_prompt, 90)}")
    response = await manager.generate(LLMRequest(messages=prompt.to_messages(), max_tokens=300))
    show(response.content, max_lines=5)
    print(f"-> answered by {answered_by(response)} in {response.response_time:.2f} s")


def money(dollars: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if dollars >= size:
            return f"${dollars / size:.1f}{unit}"
    return f"${dollars:.0f}"


def show_gap(number: int, gap: MarketGap) -> None:
    print(textwrap.fill(gap.gap_description, WIDTH, initial_indent=f"{INDENT}{number}. ",
                        subsequent_indent=INDENT + "   "))
    print(f"{INDENT}   opportunity {gap.opportunity_score:.0f}/100, competition {gap.competition_level}, "
          f"market {money(gap.estimated_tam)}, to market in {gap.timeline_to_market}")


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
    before = {name: status.requests for name, status in manager.get_all_health_status().items()}
    result = await agent.execute(AgentInput(data=gap_input, metadata={}))
    if not result.success:
        raise RuntimeError(f"agent failed: {result.error}")
    output = result.result
    calls = {name: status.requests - before.get(name, 0) for name, status in manager.get_all_health_status().items()}
    used = ", ".join(f"{name} x{count}" for name, count in calls.items() if count) or "none"
    print(f"Found {plural(len(output.market_gaps), 'market gap')} in {result.execution_time:.1f} s (LLM calls: {used})")
    stages = output.metadata.get("stages", {})
    print(f"{INDENT}made by: " + ", ".join(f"{stage} {'the model' if source == 'llm' else 'the rules'}"
                                          for stage, source in stages.items()))
    for number, gap in enumerate(output.market_gaps[:3], 1):
        show_gap(number, gap)
    print("Key insights:")
    for insight in output.result["key_insights"][:3]:
        print(textwrap.fill(insight, WIDTH, initial_indent=f"{INDENT}- ", subsequent_indent=INDENT + "  "))
    for stage, reason in output.metadata.get("fallback_reasons", {}).items():
        print(f"{INDENT}(the {stage} stage used the rule-based analysis: {one_line(reason, 70)})")
    if not output.market_gaps:
        raise RuntimeError("a valid input must yield market gaps")


def introduce(manager: LLMManager) -> None:
    backends = manager.get_available_backends()
    default = manager.get_default_backend()
    models = {name: backend.config.model_name for name, backend in manager.backends.items()}
    listed = ", ".join(f"{name} ({models[name]})" for name in backends)
    print(f"scout-llm demo. Backends: {listed}; {default} answers first.")


async def main() -> int:
    started = time.monotonic()
    await initialize_llm_backends()
    manager = get_llm_manager()
    if not manager.get_available_backends():
        print("No LLM backends available: set SCOUT_OPENAI_API_KEY (or another key) or start Ollama.",
              file=sys.stderr)
        return 3
    introduce(manager)
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
    print(f"\nAll steps passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
