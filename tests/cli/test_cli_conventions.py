"""`scout-llm` as a newcomer meets it (issue 13): the vendors' variables, names they know, failures that speak, stdin,
`--version`, `models`, Ctrl-C. Each test runs the command as a subprocess against the fake vendor servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.runner import ROOT, Completed, clean_env, run, without
from tests.fakes import claude_fake, gemini_fake, openai_fake
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.gemini_fake import FakeGemini
from tests.fakes.openai_fake import FakeOpenAI, _text_chunks
from tests.fakes.server import StreamReply

SECRETS = (openai_fake.API_KEY, claude_fake.API_KEY, gemini_fake.API_KEY, "sk-wrong-key-123")


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def claude_server() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as server:
        yield server


def openai_vars(server: FakeOpenAI, key: str = openai_fake.API_KEY) -> dict[str, str]:
    return {"SCOUT_OPENAI_API_KEY": key, "SCOUT_OPENAI_BASE_URL": server.base_url, "SCOUT_LLM_RETRY_DELAY": "0.01"}


def claude_vars(server: FakeClaude) -> dict[str, str]:
    return {"SCOUT_ANTHROPIC_API_KEY": claude_fake.API_KEY, "SCOUT_ANTHROPIC_BASE_URL": server.base_url}


async def cli(args: list[str], tmp_path: Path, stdin: bytes | None = None, **env: str) -> Completed:
    result = await run(args if args[:1] == ["-c"] else ["-m", "llm", *args], clean_env(**env), tmp_path, stdin=stdin)
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr
    return result


def one_line(result: Completed) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- 1. the vendors' standard variables ------------------------------------------------------------------------------


async def test_standard_variables_configure_a_backend(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], tmp_path, OPENAI_API_KEY=openai_fake.API_KEY,
                       OPENAI_BASE_URL=openai_server.base_url)
    assert (result.code, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    assert openai_server.count("/chat/completions") == 1


async def test_a_scout_variable_wins_over_the_standard_one(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], tmp_path, OPENAI_API_KEY="sk-wrong-key-123", OPENAI_BASE_URL="http://127.0.0.1:9",
                       **openai_vars(openai_server))
    assert (result.code, result.stdout) == (0, "echo: hi\n"), result.stderr
    assert openai_server.requests[-1].headers["authorization"] == f"Bearer {openai_fake.API_KEY}"


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("SCOUT_LLM_TIMEOUT", "abc", "scout-llm: SCOUT_LLM_TIMEOUT='abc' is not valid: expected seconds, a number > 0"),
    ("SCOUT_LLM_RETRY_ATTEMPTS", "-2", "scout-llm: SCOUT_LLM_RETRY_ATTEMPTS='-2' is not valid: expected a whole"),
    ("OPENAI_BASE_URL", "localhost:8080", "scout-llm: OPENAI_BASE_URL='localhost:8080' is not valid: expected an"),
])
async def test_an_invalid_variable_is_one_line_and_exit_3(openai_server: FakeOpenAI, tmp_path: Path, variable: str,
                                                          value: str, expected: str) -> None:
    env = {**openai_vars(openai_server), variable: value}
    env.pop("SCOUT_OPENAI_BASE_URL") if variable == "OPENAI_BASE_URL" else None
    result = await cli(["ask", "hi"], tmp_path, **env)
    assert result.code == 3
    assert one_line(result).startswith(expected)
    assert len(openai_server.requests) == 0


# -- 3. failures speak ------------------------------------------------------------------------------------------------


async def test_a_missing_sdk_names_the_extra_to_install(tmp_path: Path) -> None:
    result = await cli(without("anthropic", "ask", "hi"), tmp_path, SCOUT_ANTHROPIC_API_KEY="sk-ant-x")
    assert result.code == 3
    line = one_line(result)
    assert line.startswith("scout-llm: claude: ") and "pip install 'scout-llm[anthropic]'" in line


async def test_a_missing_sdk_is_a_note_when_another_backend_answers(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(without("anthropic", "ask", "hi"), tmp_path, SCOUT_ANTHROPIC_API_KEY="sk-ant-x",
                       **openai_vars(openai_server))
    assert (result.code, result.stdout) == (0, "echo: hi\n")
    line = one_line(result)
    assert line.startswith("scout-llm: note: claude is configured but not available")
    assert "pip install 'scout-llm[anthropic]'" in line


@pytest.mark.parametrize("json_output", [False, True], ids=["stream", "json"])
async def test_a_failover_is_said_on_stderr(openai_server: FakeOpenAI, claude_server: FakeClaude, tmp_path: Path,
                                            json_output: bool) -> None:
    args = ["ask", "hi", *(["--json"] if json_output else [])]
    result = await cli(args, tmp_path, **openai_vars(openai_server, "sk-wrong-key-123"), **claude_vars(claude_server))
    assert result.code == 0, result.stderr
    content = json.loads(result.stdout)["content"] if json_output else result.stdout.rstrip("\n")
    assert content == "echo: hi"
    assert one_line(result) == ("scout-llm: note: answered by claude (claude-sonnet-4-6) after openai failed "
                                "(LLMAuthenticationError 401)")
    assert openai_server.count("/chat/completions") == 1 and claude_server.count("/v1/messages") == 1


async def test_no_note_when_the_first_backend_answers(openai_server: FakeOpenAI, claude_server: FakeClaude,
                                                      tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], tmp_path, **openai_vars(openai_server), **claude_vars(claude_server))
    assert (result.code, result.stdout, result.stderr) == (0, "echo: hi\n", "")


async def test_health_shows_why_a_probe_failed(openai_server: FakeOpenAI, claude_server: FakeClaude,
                                               tmp_path: Path) -> None:
    result = await cli(["health"], tmp_path, **openai_vars(openai_server, "sk-wrong-key-123"),
                       **claude_vars(claude_server))
    assert result.code == 0, result.stderr  # claude is healthy
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert rows["openai"].split()[3] == "NO" and "LLMAuthenticationError" in rows["openai"]
    assert "Incorrect API key" in rows["openai"]
    assert rows["claude"].split()[2:] == ["yes", "closed", rows["claude"].split()[-2], "ms"]  # no default, no error
    assert openai_server.count("/models") == 1 and openai_server.count("/chat") == 0


async def test_unknown_default_backend_is_named(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], tmp_path, SCOUT_LLM_DEFAULT_BACKEND="nonsense", **openai_vars(openai_server))
    assert (result.code, result.stdout) == (0, "echo: hi\n")
    line = one_line(result)
    assert "SCOUT_LLM_DEFAULT_BACKEND=nonsense is not a backend name" in line and "claude (anthropic)" in line


async def test_no_backend_says_how_to_configure_one_as_a_pip_user(tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], tmp_path)
    assert result.code == 3
    line = one_line(result)
    assert "OPENAI_API_KEY" in line and "pip install 'scout-llm[local]'" in line and "make" not in line


# -- 2. names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["anthropic", "Anthropic", "claude"])
async def test_backend_aliases(openai_server: FakeOpenAI, claude_server: FakeClaude, tmp_path: Path,
                               name: str) -> None:
    result = await cli(["ask", "hi", "--json", "--backend", name], tmp_path, **openai_vars(openai_server),
                       **claude_vars(claude_server))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "claude"
    assert claude_server.count("/v1/messages") == 1 and openai_server.count("/chat") == 0


async def test_google_is_gemini(tmp_path: Path) -> None:
    async with FakeGemini() as gemini:
        result = await cli(["ask", "hi", "--json", "-b", "google"], tmp_path, GEMINI_API_KEY=gemini_fake.API_KEY,
                           SCOUT_GEMINI_BASE_URL=gemini.base_url)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["backend"] == "gemini" and gemini.count("generateContent") == 1


async def test_provider_model_picks_backend_and_model(openai_server: FakeOpenAI, claude_server: FakeClaude,
                                                      tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--json", "-m", "anthropic:claude-haiku-4-5"], tmp_path,
                       **openai_vars(openai_server), **claude_vars(claude_server))
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["backend"] == "claude" and payload["model"].startswith("claude-haiku-4-5")
    assert claude_server.requests[-1].body["model"] == "claude-haiku-4-5" and openai_server.count("/chat") == 0


async def test_provider_model_and_a_different_backend_is_a_usage_error(openai_server: FakeOpenAI,
                                                                       tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "-b", "openai", "-m", "anthropic:claude-haiku-4-5"], tmp_path,
                       **openai_vars(openai_server))
    assert result.code == 2 and "name different backends" in one_line(result) and len(openai_server.requests) == 0


async def test_an_unknown_backend_lists_the_known_and_registered_ones(openai_server: FakeOpenAI,
                                                                     tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--backend", "bard"], tmp_path, **openai_vars(openai_server))
    assert result.code == 2
    line = one_line(result)
    assert "Backend not available: bard" in line and "claude (anthropic)" in line and "registered: openai" in line
    assert len(openai_server.requests) == 0


async def test_a_known_backend_not_configured_says_how(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--backend", "anthropic"], tmp_path, **openai_vars(openai_server))
    assert result.code == 3
    line = one_line(result)
    assert "Backend not available: claude: not configured" in line and "ANTHROPIC_API_KEY" in line
    assert len(openai_server.requests) == 0


# -- 4. the command line ----------------------------------------------------------------------------------------------


async def test_version(tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = await cli(["--version"], tmp_path)
    assert (result.code, result.stdout.strip()) == (0, f"scout-llm {version}")


@pytest.mark.parametrize("args", [["ask"], ["ask", "-"]], ids=["absent", "dash"])
async def test_the_prompt_from_stdin(openai_server: FakeOpenAI, tmp_path: Path, args: list[str]) -> None:
    result = await cli(args, tmp_path, stdin=b"what is a gap?\n", **openai_vars(openai_server))
    assert (result.code, result.stdout) == (0, "echo: what is a gap?\n"), result.stderr


@pytest.mark.parametrize(("args", "stdin"), [(["ask", ""], None), (["ask", "  \n "], None), (["ask"], b""),
                                             (["ask", "-"], b" \n\t\n")], ids=["empty", "blank", "stdin", "dash"])
async def test_an_empty_prompt_is_exit_2_without_a_request(openai_server: FakeOpenAI, tmp_path: Path,
                                                           args: list[str], stdin: bytes | None) -> None:
    result = await cli(args, tmp_path, stdin=stdin, **openai_vars(openai_server))
    assert result.code == 2 and "prompt is empty" in one_line(result)
    assert len(openai_server.requests) == 0


async def test_models_lists_each_backend(openai_server: FakeOpenAI, claude_server: FakeClaude, tmp_path: Path) -> None:
    result = await cli(["models"], tmp_path, **openai_vars(openai_server), **claude_vars(claude_server))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {"openai:gpt-4.1-mini", "openai:gpt-4o", "openai:gpt-4o-mini"} <= set(lines)
    assert any(line.startswith("claude:claude-") for line in lines)
    assert all(line.split(":", 1)[0] in ("openai", "claude") for line in lines)


async def test_models_says_why_a_listing_failed(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["models"], tmp_path, **openai_vars(openai_server, "sk-wrong-key-123"))
    assert (result.code, result.stdout) == (1, "")
    assert one_line(result).startswith("scout-llm: note: openai: cannot list models: LLMAuthenticationError")


async def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    result = await cli(["--help"], tmp_path)
    assert result.code == 0
    assert "3 not configured or a configuration error" in " ".join(result.stdout.split())
    assert "130 interrupted" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
async def test_ctrl_c_ends_the_streamed_line_and_exits_130(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    openai_server.enqueue(StreamReply(_text_chunks("first", " second"), delay=0.2, then="hang"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm", "ask", "hi", cwd=tmp_path, env=clean_env(**openai_vars(openai_server)),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    first = await asyncio.wait_for(process.stdout.read(5), 30)
    process.send_signal(signal.SIGINT)
    rest, stderr = await asyncio.wait_for(asyncio.gather(process.stdout.read(), process.stderr.read()), 30)
    assert await process.wait() == 130
    assert (first + rest).decode() in ("first\n", "first second\n")
    assert stderr.decode() == "scout-llm: interrupted\n"


async def test_backends_lists_a_configured_backend_that_is_not_available(openai_server: FakeOpenAI,
                                                                         tmp_path: Path) -> None:
    result = await cli(without("anthropic", "backends"), tmp_path, SCOUT_ANTHROPIC_API_KEY="sk-ant-x",
                       **openai_vars(openai_server))
    assert result.code == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert rows["claude"].split()[:3] == ["claude", "-", "NO"] and "scout-llm[anthropic]" in rows["claude"]
    assert len(openai_server.requests) == 0


async def test_local_enabled_without_the_model_says_what_to_install(tmp_path: Path) -> None:
    result = await cli(without("llama_cpp", "ask", "hi"), tmp_path, SCOUT_LOCAL_ENABLED="true")
    assert result.code == 3
    line = one_line(result)
    assert line.startswith("scout-llm: local: SCOUT_LOCAL_ENABLED=true, but")
    assert "pip install 'scout-llm[local]'" in line
