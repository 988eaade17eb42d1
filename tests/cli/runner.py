"""Run the project's commands as subprocesses against fake vendor servers (which keep serving on this loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


def clean_env(**scout: str) -> dict[str, str]:
    """The environment without any SCOUT_* or vendor variables, plus the given SCOUT_* ones."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCOUT_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "OLLAMA_"))}
    env["SCOUT_OLLAMA_ENABLED"] = "false"
    env["SCOUT_LOCAL_ENABLED"] = "false"  # the in-process model is tested in tests/backends/test_local_e2e.py
    env["PYTHONPATH"] = str(ROOT)
    env.update(scout)
    return env


async def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> Completed:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())
