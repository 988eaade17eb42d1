"""The `scout-llm` command (also `python -m llm`).

    scout-llm ask "What is a market gap?" [--backend openai] [--model M] [--system S] [--temperature T]
                                          [--max-tokens N] [--json]
    scout-llm backends                    # what is configured, as a table (never a key)
    scout-llm health                      # probe every backend (a models listing, never a billed call), as a table
    scout-llm gap-finder "pain point" ... [--file pains.json] [--context "..."] [--scope quick|focused|comprehensive]

Exit codes scripts can rely on: 0 success; 1 the backends failed (an LLM error); 2 bad usage or invalid input;
3 nothing configured or a configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from llm.errors import LLMConfigError, LLMError, LLMValidationError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

NO_BACKEND_HINT = (
    "no backend configured: set SCOUT_OPENAI_API_KEY, SCOUT_ANTHROPIC_API_KEY, SCOUT_GEMINI_API_KEY or "
    "SCOUT_DEEPSEEK_API_KEY (environment or .env), or start Ollama at SCOUT_OLLAMA_BASE_URL"
)


class CLIError(Exception):
    """A failure the command reports in one line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scout-llm", description="One interface over OpenAI, Claude, Gemini "
                                     "and Ollama.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the layer does (to stderr)")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="ask a question; the answer streams to the terminal")
    ask.add_argument("prompt")
    ask.add_argument("--backend", help="backend to try first (openai, claude, gemini, ollama, deepseek)")
    ask.add_argument("--model", help="model name for that backend")
    ask.add_argument("--system", help="system prompt")
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--json", action="store_true", help="print the whole response as JSON instead of streaming")

    commands.add_parser("backends", help="list the configured backends")
    commands.add_parser("health", help="probe every backend and show its health")

    gaps = commands.add_parser("gap-finder", help="run the GapFinder analysis on pain points")
    gaps.add_argument("pain_points", nargs="*", help="pain points, one per argument")
    gaps.add_argument("--file", type=Path, help="JSON file: a list of strings or of {description, severity} objects")
    gaps.add_argument("--context", default="General market", help="market context")
    gaps.add_argument("--scope", default="comprehensive", choices=["quick", "focused", "comprehensive"])
    gaps.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


async def configured_manager() -> Any:
    """The global manager with every configured backend registered; fails with the fix when there is none."""
    from llm.manager import get_llm_manager, initialize_llm_backends

    manager = get_llm_manager()
    await initialize_llm_backends()
    if not manager.get_available_backends():
        raise CLIError(NO_BACKEND_HINT, EXIT_CONFIG)
    return manager


def request_from(args: argparse.Namespace) -> Any:
    from llm.base import LLMRequest

    extra = {"model_name_override": args.model} if args.model else {}
    return LLMRequest(messages=[{"role": "user", "content": args.prompt}], system_prompt=args.system,
                      temperature=args.temperature, max_tokens=args.max_tokens, extra_params=extra)


async def run_ask(args: argparse.Namespace, out: TextIO) -> int:
    from llm.base import ResponseDone, TextDelta

    manager = await configured_manager()
    request = request_from(args)
    if args.json:
        response = await manager.generate(request, backend_type=args.backend)
        out.write(json.dumps(response_dict(response), indent=2) + "\n")
        return EXIT_OK
    events: AsyncIterator[Any] = manager.stream(request, backend_type=args.backend)
    async for event in events:
        if isinstance(event, TextDelta):
            out.write(event.text)
            out.flush()
        elif isinstance(event, ResponseDone):
            out.write("\n")
    return EXIT_OK


def response_dict(response: Any) -> dict[str, Any]:
    return {
        "content": response.content,
        "model": response.model,
        "backend": response.backend_type,
        "usage": response.usage,
        "finish_reason": response.finish_reason,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        "response_time": round(response.response_time, 4),
        "attempts": response.metadata.get("attempts", []),
    }


def health_rows(manager: Any) -> list[list[str]]:
    rows = [["backend", "model", "default", "healthy", "breaker", "latency", "last error"]]
    default = manager.get_default_backend()
    for name, health in manager.get_all_health_status().items():
        backend = manager.backends[name]
        latency = getattr(health, "last_probe_latency", None) or health.avg_response_time
        rows.append([
            name,
            backend.config.model_name,
            "yes" if name == default else "",
            "yes" if health.is_healthy else "NO",
            str(getattr(health, "breaker_state", "closed")),
            f"{latency * 1000:.0f} ms" if latency else "-",
            (getattr(health, "last_error", None) or "")[:60],
        ])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


async def run_backends(args: argparse.Namespace, out: TextIO) -> int:
    manager = await configured_manager()
    if args.command == "health":
        await probe_all(manager)
    out.write(format_table(health_rows(manager)) + "\n")
    return EXIT_OK if manager.get_healthy_backends() else EXIT_FAILED


async def probe_all(manager: Any) -> None:
    """Run each backend's health check (a models listing) and record it in the manager's health table."""
    check = getattr(manager, "check_health", None)
    if check is not None:
        await check()
        return
    for name, backend in manager.backends.items():
        start = time.perf_counter()
        ok = await backend.health_check()
        health = manager.get_backend_health(name)
        if health is not None:
            health.is_healthy = ok
            health.last_probe_latency = time.perf_counter() - start


def load_pain_points(args: argparse.Namespace) -> list[dict[str, Any]]:
    items: list[Any] = list(args.pain_points)
    if args.file is not None:
        try:
            loaded = json.loads(args.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read {args.file}: {exc}", EXIT_USAGE) from exc
        if not isinstance(loaded, list):
            raise CLIError(f"{args.file} must hold a JSON list of pain points", EXIT_USAGE)
        items.extend(loaded)
    if not items:
        raise CLIError("give pain points as arguments or with --file", EXIT_USAGE)
    return [item if isinstance(item, dict) else {"description": str(item), "severity": "medium"} for item in items]


async def run_gap_finder(args: argparse.Namespace, out: TextIO) -> int:
    from agents.base import AgentInput
    from agents.gap_finder import GapFinderInput
    from agents.gap_finder_enhanced import EnhancedGapFinderAgent

    pain_points = load_pain_points(args)
    manager = await configured_manager()
    agent = EnhancedGapFinderAgent()
    agent._llm_manager = manager
    gap_input = GapFinderInput(validated_pain_points=pain_points, market_context=args.context,
                               analysis_scope=args.scope)
    async with progress("analysing market gaps"):
        result = await agent.execute(AgentInput(data=gap_input, metadata={"source": "cli"}))
    if not result.success:
        raise CLIError(f"gap analysis failed: {result.error}", EXIT_FAILED)
    output = result.result
    if args.json:
        payload = {"market_gaps": [gap.to_dict() for gap in output.market_gaps],
                   "recommendations": output.recommendations, "result": output.result,
                   "metadata": output.metadata}
        out.write(json.dumps(payload, indent=2, default=str) + "\n")
        return EXIT_OK
    out.write(f"Found {len(output.market_gaps)} market gaps ({result.execution_time:.1f}s)\n")
    for i, gap in enumerate(output.market_gaps, 1):
        out.write(f"{i}. {gap.gap_description}\n   opportunity {gap.opportunity_score:.0f}/100, "
                  f"competition {gap.competition_level}\n")
    insights = (output.result or {}).get("key_insights", [])
    if insights:
        out.write("Key insights:\n" + "".join(f"- {item}\n" for item in insights))
    return EXIT_OK


@contextlib.asynccontextmanager
async def progress(label: str, stream: TextIO = sys.stderr) -> AsyncIterator[None]:
    """A spinner on a terminal, one start and one end line otherwise."""
    interactive = stream.isatty()

    async def spin() -> None:
        frames = "|/-\\"
        i = 0
        while True:
            stream.write(f"\r{frames[i % 4]} {label}...")
            stream.flush()
            i += 1
            await asyncio.sleep(0.1)

    task = asyncio.create_task(spin()) if interactive else None
    if not interactive:
        stream.write(f"{label}...\n")
    start = time.monotonic()
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            stream.write("\r")
        stream.write(f"{label}: done in {time.monotonic() - start:.1f}s\n")
        stream.flush()


COMMANDS = {"ask": run_ask, "backends": run_backends, "health": run_backends, "gap-finder": run_gap_finder}


async def run(args: argparse.Namespace, out: TextIO) -> int:
    from llm.manager import get_llm_manager

    try:
        return await COMMANDS[args.command](args, out)
    finally:
        await get_llm_manager().cleanup()


def error_exit_code(exc: BaseException) -> int:
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, LLMValidationError):
        return EXIT_USAGE
    if isinstance(exc, LLMConfigError):
        return EXIT_CONFIG
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scout-llm`; returns the exit code."""
    args = build_parser().parse_args(argv)
    # Warnings the library logs (a backend that did not register, ...) would garble the one-line errors; -v shows them.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(run(args, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except (CLIError, LLMError) as exc:
        sys.stderr.write(f"scout-llm: {one_line(exc)}\n")
        return error_exit_code(exc)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ExceptionGroup):
        text += ": " + "; ".join(" ".join(str(e).split()) for e in exc.exceptions)
    return text
