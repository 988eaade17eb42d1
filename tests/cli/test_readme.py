"""Every code snippet in the README runs, against fake OpenAI and Anthropic servers."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.runner import ROOT, clean_env, run
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PYTHON = [body for lang, body in BLOCK.findall(README) if lang == "python"]
CLI = [line.split("  #")[0].strip() for lang, body in BLOCK.findall(README) if lang == "bash"
       for line in body.splitlines() if line.startswith(("scout-llm ", "python -m llm "))]


@pytest.fixture
async def environment() -> AsyncIterator[dict[str, str]]:
    async with FakeOpenAI() as openai_server, FakeClaude() as claude_server:
        yield clean_env(SCOUT_OPENAI_API_KEY=OPENAI_KEY, SCOUT_OPENAI_BASE_URL=openai_server.base_url,
                        SCOUT_ANTHROPIC_API_KEY=CLAUDE_KEY, SCOUT_ANTHROPIC_BASE_URL=claude_server.url,
                        SCOUT_ANTHROPIC_MODEL="claude-haiku-4-5", SCOUT_LOCAL_ENABLED="false")


def test_the_readme_has_snippets_of_each_kind() -> None:
    assert len(PYTHON) >= 10 and len(CLI) >= 6
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("snippet", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
async def test_python_snippet_runs(snippet: str, environment: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(snippet, encoding="utf-8")
    result = await run([str(ROOT / "tests/cli/snippet_runner.py"), str(path)], environment, tmp_path)
    assert result.code == 0, f"snippet failed:\n{snippet}\n--- stderr:\n{result.stderr}"
    assert OPENAI_KEY not in result.stdout + result.stderr and CLAUDE_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("command", CLI, ids=[f"cli-{i}" for i in range(len(CLI))])
async def test_cli_line_runs(command: str, environment: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "pains.json").write_text(json.dumps(["Invoices typed by hand"]))
    args = shlex.split(command)
    args = args[3:] if args[:3] == ["python", "-m", "llm"] else args[1:]
    result = await run(["-m", "llm", *args], environment, tmp_path)
    assert result.code == 0, f"{command}\n--- stderr:\n{result.stderr}"
    assert result.stdout.strip()
