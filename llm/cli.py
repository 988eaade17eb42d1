"""The `scout-llm` command (also `python -m llm`): the parser, the core commands (`llm/console/`), the commands other
packages add through the entry-point group `scout_llm.commands`, and the exit codes. Usage, notes and exit codes:
README "The CLI"."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from llm.console.ask import configure_ask, run_ask
from llm.console.command import *  # noqa: F403  (what a plugin command needs: `from llm.cli import Command, ...`)
from llm.console.command import (
    EXIT_CLOSED_PIPE,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CLIError,
    Command,
    note,
)
from llm.console.command import __all__ as _command_names
from llm.console.render import progress
from llm.console.status import run_backends, run_models
from llm.errors import LLMConfigError, LLMError, LLMValidationError

__all__ = ["COMMAND_GROUP", "main", "progress"]
__all__ += _command_names

#: The entry-point group through which other packages add subcommands.
COMMAND_GROUP = "scout_llm.commands"
DISTRIBUTION = "scout-llm"


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """Commands without arguments."""


CORE_COMMANDS = (
    Command("ask", "ask a question; the answer streams to the terminal", configure_ask, run_ask),
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
               "3 not configured or a configuration error, 130 interrupted, 141 stdout closed by its reader")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the layer does (to stderr)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.configure(subparsers.add_parser(command.name, help=command.help))
    return parser


# -- running ----------------------------------------------------------------------------------------------------------


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
    """Entry point of `scout-llm`; returns the exit code (README "The CLI")."""
    commands = [*CORE_COMMANDS, *plugin_commands()]
    args = build_parser(commands).parse_args(argv)
    # Warnings the library logs would garble the one-line errors; what a user must know is said as notes. -v: all.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    command = next(command for command in commands if command.name == args.command)
    try:
        code = asyncio.run(run(command, args, sys.stdout))
        sys.stdout.flush()  # here, not at interpreter exit, so that a closed pipe is handled below
        return code
    except BrokenPipeError:
        return closed_pipe()
    except KeyboardInterrupt:
        sys.stderr.write("scout-llm: interrupted\n")
        return EXIT_INTERRUPTED
    except (CLIError, LLMError) as exc:
        sys.stderr.write(f"scout-llm: {one_line(exc)}\n")
        return error_exit_code(exc)


def closed_pipe() -> int:
    """stdout's reader went away (`scout-llm ask ... | head`): end quietly, as a command SIGPIPE ends. stdout is
    pointed at /dev/null first so that the interpreter's last flush cannot raise again
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured): nothing to redirect
        pass
    return EXIT_CLOSED_PIPE


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ExceptionGroup):
        text += ": " + "; ".join(" ".join(str(e).split()) for e in exc.exceptions)
    return text
