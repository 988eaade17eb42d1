"""The examples run end to end as a user runs them, against fake OpenAI and Anthropic servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.runner import ROOT, clean_env, run
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.claude_fake import error_reply as claude_error_reply
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI, _text_chunks
from tests.fakes.server import Reply, StreamReply, sse


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
    lines = result.stdout.splitlines()
    assert "Backends: openai (gpt-4.1-mini), claude (claude-haiku-4-5); openai answers first." in lines[0]
    assert "-> answered by openai / gpt-4.1-mini in " in result.stdout
    assert "asked claude    answered by claude / claude-haiku-4-5-20251001: echo: Say hello in five words." in lines
    # The fake answers a structured request with the prompt's text, which is no JSON: each stage asks once for a
    # repair (inside its one manager call), then says it used the rules.
    assert "(LLM calls: openai x3)" in result.stdout
    assert "  made by: plan the rules, think the rules, act the rules" in lines
    assert "(the act stage used the rule-based analysis: the model's answer did not match the schema" in result.stdout


async def test_integration_example_names_the_backend_that_answered(servers: tuple[FakeOpenAI, FakeClaude],
                                                                   tmp_path: Path) -> None:
    """Issue 10: after a failover the line names the backend that answered, not the one asked."""
    openai_server, claude_server = servers
    claude_server.enqueue(claude_error_reply(401, {}))
    result = await run([str(ROOT / "examples/llm_integration_example.py")], env(servers), tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    assert ("asked claude    answered by openai / gpt-4.1-mini (after a failover from claude): "
            "echo: Say hello in five words.") in result.stdout.splitlines()
    assert "last error: LLMAuthenticationError" in result.stdout
    assert claude_server.count("/messages") == 1


async def test_integration_example_output_reads_as_text(servers: tuple[FakeOpenAI, FakeClaude],
                                                        tmp_path: Path) -> None:
    """No Python reprs, no line over the page width, no word cut in the middle by a shortened answer."""
    openai_server, _ = servers
    long_answer = " ".join(f"zeta{i}" for i in range(400))
    pieces = [long_answer[i:i + 7] for i in range(0, len(long_answer), 7)]  # words split across chunks
    end = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-mini",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    streamed = StreamReply([*_text_chunks(*pieces), *sse([end]), "data: [DONE]\n\n"])
    # In order: basic generation, backend switching (openai), streaming, templates.
    openai_server.enqueue(*(Reply(body=_chat_reply(long_answer)) for _ in range(2)), streamed,
                          Reply(body=_chat_reply(long_answer)))
    result = await run([str(ROOT / "examples/llm_integration_example.py")], env(servers), tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        assert len(line) <= 120, line
        assert not any(mark in line for mark in ("['", "{'", "<llm.", "None")), line
    words = {word for line in result.stdout.splitlines() for word in line.split() if word.startswith("zeta")}
    assert words and all(word.removeprefix("zeta").isdigit() for word in words), "a word was cut"
    assert "[...]" in result.stdout
    streamed_lines = result.stdout.split("=== Streaming ===")[1].split("-> answered by")[0].strip().splitlines()
    assert len(streamed_lines) > 20, "the streamed answer is wrapped to the page"
    assert " ".join(line.strip() for line in streamed_lines) == long_answer, "and printed whole, word by word"


def _chat_reply(text: str) -> dict[str, object]:
    return {"id": "chatcmpl-long", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 400, "total_tokens": 405}}


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
    lines = result.stdout.splitlines()
    assert "creative_writing -> claude" in lines
    assert ("answered by claude / claude-haiku-4-5-20251001: echo: Write a two-line slogan"
            in lines[lines.index("creative_writing -> claude") + 1])
    assert "    simple_query -> openai (gemini not configured)" in lines
    assert all(len(line) <= 120 for line in lines)
    assert "configured backends: openai, claude" in result.stdout
    openai_server, claude_server = servers
    assert claude_server.count("/messages") == 1
    assert openai_server.count("/chat/completions") == 3


async def test_backend_optimization_example_names_the_backend_that_answered(
        servers: tuple[FakeOpenAI, FakeClaude], tmp_path: Path) -> None:
    """Issue 10: routed to claude, answered by openai after claude refused the key."""
    _, claude_server = servers
    claude_server.enqueue(claude_error_reply(401, {}))
    result = await run([str(ROOT / "examples/agent_backend_optimization_example.py")], env(servers), tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "answered by openai / gpt-4.1-mini: echo: Write a" in lines[lines.index("creative_writing -> claude") + 1]


async def test_examples_without_any_backend_exit_3(tmp_path: Path) -> None:
    for name in ("llm_integration_example.py", "agent_backend_optimization_example.py"):
        result = await run([str(ROOT / "examples" / name)], clean_env(SCOUT_LOCAL_ENABLED="false"), tmp_path)
        assert result.code == 3, result.stderr
        assert "No LLM backends available" in result.stderr
