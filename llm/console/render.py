"""What the terminal shows: a streamed answer, a response as JSON, the failover note, the health table, the progress
spinner (README "The CLI")."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

__all__ = ["describe_limit", "failover_note", "format_table", "health_rows", "progress", "response_dict",
           "stream_answer"]


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
    finally:  # however the loop ends (a closed stdout raises out of it), the stream ends here, not in the collector
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
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
