"""The examples run end to end as a user runs them, against fake OpenAI and Anthropic servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.runner import ROOT, clean_env, run
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import Reply


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeOpenAI, FakeClaude]]:
    async with FakeOpenAI() as openai_server, FakeClaude() as claude_server:
        yield openai_server, claude_server


def env(servers: tuple[FakeOpenAI, FakeClaude]) -> dict[str, str]:
    openai_server, claude_server = servers
    return clean_env(SCOUT_OPENAI_API_KEY=OPENAI_KEY, SCOUT_OPENAI_BASE_URL=openai_server.base_url,
                     SCOUT_ANTHROPIC_API_KEY=CLAUDE_KEY, SCOUT_ANTHROPIC_BASE_URL=claude_server.url,
                     SCOUT_ANTHROPIC_MODEL="claude-haiku-4-5", SCOUT_LLM_RETRY_DELAY="0.01")


async def test_integration_example(servers: tuple[FakeOpenAI, FakeClaude], tmp_path: Path) -> None:
    result = await run([str(ROOT / "examples/llm_integration_example.py")], env(servers), tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    for title in ("Basic generation", "Backend switching", "Streaming", "Health", "Error handling",
                  "Prompt templates", "Enhanced GapFinder agent"):
        assert f"=== {title} ===" in result.stdout
    assert "All steps passed" in result.stdout
    openai_server, claude_server = servers
    assert openai_server.count("/chat/completions") >= 5
    assert claude_server.count("/messages") == 1, "backend switching asks each backend once"


async def test_integration_example_fails_loudly(servers: tuple[FakeOpenAI, FakeClaude], tmp_path: Path) -> None:
    openai_server, _ = servers
    openai_server.enqueue(Reply(status=401, body={"error": {"message": "bad key", "type": "invalid_request_error",
                                                            "code": "invalid_api_key"}}))
    result = await run([str(ROOT / "examples/llm_integration_example.py")],
                       {**env(servers), "SCOUT_ANTHROPIC_API_KEY": ""}, tmp_path)
    assert result.code == 1
    assert "FAILED" in result.stderr


async def test_backend_optimization_example(servers: tuple[FakeOpenAI, FakeClaude], tmp_path: Path) -> None:
    result = await run([str(ROOT / "examples/agent_backend_optimization_example.py")], env(servers), tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    assert "creative_writing -> claude" in result.stdout
    assert "simple_query -> openai (gemini not configured)" in result.stdout
    openai_server, claude_server = servers
    assert claude_server.count("/messages") == 1
    assert openai_server.count("/chat/completions") == 3


async def test_examples_without_any_backend_exit_3(tmp_path: Path) -> None:
    for name in ("llm_integration_example.py", "agent_backend_optimization_example.py"):
        result = await run([str(ROOT / "examples" / name)], clean_env(SCOUT_LOCAL_ENABLED="false"), tmp_path)
        assert result.code == 3, result.stderr
        assert "No LLM backends available" in result.stderr
