"""`scout-llm ask --json` reports usage and cost; `-v` ends with a one-line cost summary on stderr (subprocesses
against the fake OpenAI server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from tests.cli.runner import Completed, clean_env, run
from tests.fakes.openai_fake import API_KEY, FakeOpenAI

#: The CLI with the global manager pricing the fake (127.0.0.1, unknown to genai-prices) as OpenAI, as a user sets
#: `price_providers` for a gateway in front of OpenAI.
PRICED_AS_OPENAI = (
    "import runpy, sys\n"
    "from llm import manager\n"
    "manager._manager = manager.LLMManager(price_providers={'openai': 'openai'})\n"
    "sys.argv[0] = 'scout-llm'\n"
    "runpy.run_module('llm', run_name='__main__', alter_sys=True)\n"
)


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def cli(args: list[str], server: FakeOpenAI, tmp_path: Path, *, priced: bool = False,
              **scout: str) -> Completed:
    env = clean_env(SCOUT_OPENAI_API_KEY=API_KEY, SCOUT_OPENAI_BASE_URL=server.base_url, **scout)
    prefix = ["-c", PRICED_AS_OPENAI] if priced else ["-m", "llm"]
    return await run([*prefix, *args], env, tmp_path)


def openai_price(model: str, usage: dict[str, int]) -> float:
    price = calc_price(Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]), model,
                       provider_id="openai")
    return float(price.total_price)


async def test_ask_json_includes_usage_and_cost(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--json", "--model", "gpt-4o"], openai_server, tmp_path, priced=True)
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["usage"]["total_tokens"] == payload["usage"]["prompt_tokens"] + payload["usage"]["completion_tokens"]
    assert payload["cost_usd"] == openai_price("gpt-4o", payload["usage"]) > 0
    assert "cost:" not in result.stderr  # without -v, no cost line
    assert openai_server.count("/chat/completions") == 1


async def test_ask_json_cost_is_null_when_the_price_is_unknown(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi", "--json"], openai_server, tmp_path)
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["cost_usd"] is None and payload["usage"]["total_tokens"] > 0


async def test_verbose_prints_one_cost_line(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["-v", "ask", "hi", "--json", "--model", "gpt-4o"], openai_server, tmp_path, priced=True)
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    (line,) = [line for line in result.stderr.splitlines() if "cost:" in line]
    total = payload["usage"]["total_tokens"]
    assert line == f"scout-llm: note: cost: {payload['cost_usd']:.6f} USD for 1 call ({total} tokens)"


async def test_verbose_cost_line_names_unpriced_calls_and_the_budget(openai_server: FakeOpenAI,
                                                                     tmp_path: Path) -> None:
    result = await cli(["-v", "ask", "hi"], openai_server, tmp_path, SCOUT_LLM_BUDGET_USD="2")
    assert result.code == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cost:" in line]
    assert "1 call with unknown price (openai gpt-4.1-mini)" in line and "budget 2 USD" in line


async def test_a_spent_budget_fails_the_command_before_sending(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    result = await cli(["ask", "hi"], openai_server, tmp_path, SCOUT_LLM_BUDGET_USD="0")
    assert result.code == 1
    assert "spend budget of 0 USD is used up" in result.stderr
    assert openai_server.count("/chat/completions") == 0
