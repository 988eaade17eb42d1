"""`scout-llm backends`, `health` and `models`: what is configured, how each backend does, what it serves (README "The
CLI")."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from llm.console.command import EXIT_FAILED, EXIT_OK, configured_manager, note
from llm.console.render import format_table, health_rows
from llm.errors import LLMError

__all__ = ["run_backends", "run_models"]


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
