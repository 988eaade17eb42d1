"""`scout-llm` as a user runs it: a subprocess against the fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.runner import Completed, clean_env, run
from tests.fakes.openai_fake import API_KEY, FakeOpenAI
from tests.fakes.server import Reply

CANARY = API_KEY  # the fake accepts only this key; it must never be printed


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def cli(args: list[str], server: FakeOpenAI | None, tmp_path: Path) -> Completed:
    scout = {"SCOUT_OPENAI_API_KEY": CANARY, "SCOUT_OPENAI_BASE_URL": server.base_url,
             "SCOUT_LLM_RETRY_DELAY": "0.01"} if server else {}
    result = await run(["-m", "llm", *args], clean_env(**scout), tmp_path)
    assert CANARY not in result.stdout and CANARY not in result.stderr
    return result


async def test_ask_streams_the_answer(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hello world", "--temperature", "0"], openai_server, tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout == "echo: hello world\n"
    assert openai_server.count("/chat/completions") == 1
    body = openai_server.requests[-1].body
    assert body["stream"] is True and body["temperature"] == 0


async def test_ask_json_prints_the_whole_response(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--json", "--model", "gpt-4o", "--system", "be brief", "--max-tokens", "9"],
                       openai_server, tmp_path)
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["content"] == "echo: hi" and payload["backend"] == "openai" and payload["model"] == "gpt-4o"
    assert payload["usage"]["total_tokens"] == 9
    body = openai_server.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["max_tokens"] == 9


async def test_ask_schema_prints_the_parsed_object(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}},
                                  "required": ["name"]}))
    # Asked for JSON, the fake answers the prompt verbatim: the prompt is the answer here
    result = await cli(["ask", '{"name":   "Paris"}', "--schema", str(schema)], openai_server, tmp_path)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"name": "Paris"} and result.stdout == '{\n  "name": "Paris"\n}\n'
    sent = openai_server.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "city" and sent["json_schema"]["strict"]
    assert sent["json_schema"]["schema"]["additionalProperties"] is False


async def test_ask_schema_refuses_an_unreadable_file_and_reports_an_invalid_answer(
        openai_server: FakeOpenAI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    result = await cli(["ask", "hi", "--schema", str(bad)], openai_server, tmp_path)
    assert result.code == 2 and "cannot read the schema" in result.stderr
    assert openai_server.count("/chat/completions") == 0
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}}}))
    result = await cli(["ask", "not json", "--schema", str(schema)], openai_server, tmp_path)
    assert result.code == 1 and "the answer did not match city after one repair" in result.stderr
    assert openai_server.count("/chat/completions") == 2  # the answer and its one repair


async def test_no_backend_configured_says_how_to_fix_it(tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], None, tmp_path)
    assert result.code == 3
    assert "no backend configured: set OPENAI_API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_backend_failure_exit_code(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    openai_server.enqueue(Reply(status=401, body={"error": {"message": "Incorrect API key", "type": "x",
                                                            "code": "invalid_api_key"}}))
    result = await cli(["ask", "hi", "--json"], openai_server, tmp_path)
    assert result.code == 1
    assert result.stderr.startswith("scout-llm: ") and "Incorrect API key" in result.stderr


async def test_invalid_input_exit_code(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--temperature", "7"], openai_server, tmp_path)
    assert result.code == 2
    assert "temperature" in result.stderr
    assert openai_server.count("/chat/completions") == 0


async def test_health_table_has_no_secret(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["health"], openai_server, tmp_path)
    assert result.code == 0, result.stderr
    header, rule, row = result.stdout.splitlines()[:3]
    assert header.split()[:5] == ["backend", "model", "default", "healthy", "breaker"]
    assert row.split()[:5] == ["openai", "gpt-4.1-mini", "yes", "yes", "closed"]
    assert openai_server.count("/models") == 1 and openai_server.count("/chat/completions") == 0


async def test_backends_table(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["backends"], openai_server, tmp_path)
    assert result.code == 0, result.stderr
    assert "openai" in result.stdout and len(openai_server.requests) == 0


async def test_gap_finder_from_arguments_and_file(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    pains = tmp_path / "pains.json"
    pains.write_text(json.dumps([{"description": "Invoices are typed by hand", "severity": "high"}]))
    result = await cli(["gap-finder", "Manual inventory tracking", "--file", str(pains), "--json"], openai_server,
                       tmp_path)
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["market_gaps"], "a valid input always yields gaps"
    assert "key_insights" in payload["result"]
    assert "analysing market gaps" in result.stderr


async def test_gap_finder_without_pain_points_is_a_usage_error(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["gap-finder"], openai_server, tmp_path)
    assert result.code == 2 and "pain points" in result.stderr
