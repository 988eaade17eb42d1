"""The usage ledger: totals per backend and model, unknown costs counted apart, and the spend budget."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from llm.accounting.ledger import LLMBudgetExceededError, UsageLedger, cost_line, parse_budget
from llm.accounting.pricing import DeferredCost
from llm.errors import LLMError


def usage(prompt: int, completion: int, **details: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **details}


class Response:
    """The fields of an `LLMResponse` the ledger reads."""

    def __init__(self, backend: str, model: str, usage: dict[str, int] | None, cost: float | None = None) -> None:
        self.backend_type, self.model, self.usage, self.cost_usd = backend, model, usage, cost


def test_summary_per_backend_and_model_with_totals() -> None:
    ledger = UsageLedger()
    ledger.record("openai", "gpt-4o", usage(100, 10, cached_tokens=64), 0.25)
    ledger.record("openai", "gpt-4o", usage(50, 5), 0.5)
    ledger.record("ollama", "llama3", usage(7, 3), None)
    ledger.record_response(Response("claude", "claude-sonnet-4", usage(1, 1, reasoning_tokens=1), 1.0))
    summary = ledger.summary()
    assert summary["by_backend"]["openai"]["gpt-4o"] == {
        "calls": 2, "errors": 0, "prompt_tokens": 150, "completion_tokens": 15, "total_tokens": 165,
        "cached_tokens": 64, "cost_usd": 0.75, "unknown_cost_calls": 0}
    assert summary["by_backend"]["ollama"]["llama3"]["unknown_cost_calls"] == 1
    assert summary["by_backend"]["ollama"]["llama3"]["cost_usd"] == 0.0
    assert "cached_tokens" not in summary["by_backend"]["ollama"]["llama3"]  # never reported: not made up
    total = summary["total"]
    assert (total["calls"], total["prompt_tokens"], total["cost_usd"], total["unknown_cost_calls"]) == (4, 158, 1.75, 1)
    assert total["reasoning_tokens"] == 1
    assert summary["budget_usd"] is None and summary["remaining_usd"] is None and summary["spent_usd"] == 1.75


def test_failed_attempts_are_errors_of_their_backend_and_model() -> None:
    ledger = UsageLedger()
    trail = [
        {"backend": "openai", "model": "gpt-4o", "outcome": "LLMServerError", "elapsed": 0.1, "status_code": 503},
        {"backend": "openai", "model": "gpt-4o", "outcome": "LLMServerError", "elapsed": 0.1, "status_code": 503},
        {"backend": "claude", "model": "claude-x", "outcome": "skipped: circuit open", "elapsed": 0.0},
        {"backend": "gemini", "model": "gemini-2.5-flash", "outcome": "ok", "elapsed": 0.2},
    ]
    ledger.record_attempts(trail)
    by_backend = ledger.summary()["by_backend"]
    assert by_backend["openai"]["gpt-4o"]["errors"] == 2 and by_backend["openai"]["gpt-4o"]["calls"] == 0
    assert "claude" not in by_backend and "gemini" not in by_backend


def test_deferred_costs_priced_only_when_totals_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    priced: list[str] = []

    def fake_cost(backend: str, model: str, usage: Any, base_url: Any = None, *, provider: Any = None) -> float:
        priced.append(model)
        return 0.125

    monkeypatch.setattr("llm.accounting.pricing.cost_usd", fake_cost)
    monkeypatch.setattr("llm.accounting.ledger.cost_usd", fake_cost)
    ledger = UsageLedger()
    for _ in range(3):
        ledger.record("openai", "gpt-4o", usage(1, 1), DeferredCost("openai", "gpt-4o", usage(1, 1)))
    ledger.check_budget()  # no budget: nothing to price
    assert priced == []
    assert ledger.spent_usd == 0.375 and len(priced) == 1  # three calls of the same usage: one price
    assert ledger.summary()["total"]["cost_usd"] == 0.375 and len(priced) == 1  # priced once, kept


def test_budget_raises_once_spent_and_not_before() -> None:
    ledger = UsageLedger(budget_usd=1.0)
    ledger.check_budget()
    ledger.record("openai", "gpt-4o", usage(1, 1), 0.6)
    ledger.check_budget()
    ledger.record("openai", "gpt-4o", usage(1, 1), 0.4)
    with pytest.raises(LLMBudgetExceededError) as caught:
        ledger.check_budget()
    assert isinstance(caught.value, LLMError)
    assert caught.value.budget_usd == 1.0 and caught.value.spent_usd == pytest.approx(1.0)
    assert "no request was sent" in str(caught.value) and "SCOUT_LLM_BUDGET_USD" in str(caught.value)
    assert ledger.summary()["remaining_usd"] == 0.0
    ledger.reset()
    ledger.check_budget()


def test_unknown_costs_under_a_budget_are_said_once(caplog: pytest.LogCaptureFixture) -> None:
    ledger = UsageLedger(budget_usd=5)
    ledger.record("ollama", "llama3", usage(1, 1), None)
    with caplog.at_level(logging.WARNING, logger="llm.accounting.ledger"):
        ledger.check_budget()
        ledger.check_budget()
    said = [r.getMessage() for r in caplog.records if "no known price" in r.getMessage()]
    assert len(said) == 1 and "ollama" in said[0] and "llama3" in said[0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1, "abc", "-0.5", True])
def test_budget_setting_rejects_what_is_not_a_budget(bad: Any) -> None:
    with pytest.raises(ValueError, match="SCOUT_LLM_BUDGET_USD"):
        parse_budget(bad)


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("  ", None), ("2.5", 2.5), (0, 0.0)])
def test_budget_setting_values(value: Any, expected: float | None) -> None:
    assert parse_budget(value) == expected


def test_a_zero_budget_refuses_every_call() -> None:
    with pytest.raises(LLMBudgetExceededError):
        UsageLedger(budget_usd=0).check_budget()


def test_cost_line_says_the_spend_and_what_is_not_priced() -> None:
    ledger = UsageLedger(budget_usd=5)
    ledger.record("openai", "gpt-4o", usage(16, 12), 0.00016)
    ledger.record("ollama", "llama3", usage(7, 3), None)
    ledger.record_error("openai", "gpt-4o")
    assert cost_line(ledger.summary()) == (
        "cost: 0.000160 USD for 2 calls (38 tokens), 1 failed attempt; 1 call with unknown price (ollama llama3); "
        "budget 5 USD, 4.999840 left")
    assert cost_line(UsageLedger().summary()) == "cost: 0.000000 USD for 0 calls"


def test_a_ledger_never_read_folds_its_pending_costs_without_pricing(monkeypatch: pytest.MonkeyPatch) -> None:
    priced: list[int] = []

    def fake_cost(backend: str, model: str, usage: Any, base_url: Any = None, *, provider: Any = None) -> float:
        priced.append(usage["prompt_tokens"])
        return 0.125 * usage["prompt_tokens"]

    monkeypatch.setattr("llm.accounting.pricing.cost_usd", fake_cost)
    monkeypatch.setattr("llm.accounting.ledger.cost_usd", fake_cost)
    monkeypatch.setattr("llm.accounting.ledger.MAX_PENDING", 4)
    ledger = UsageLedger()
    for prompt in [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 3]:  # past the pending cap twice: folded, not priced
        ledger.record("openai", "gpt-4o", usage(prompt, 1), DeferredCost("openai", "gpt-4o", usage(prompt, 1)))
    assert priced == []
    summary = ledger.summary()
    assert sorted(priced) == [1, 2, 3]  # one price per distinct usage
    assert summary["total"]["cost_usd"] == 0.125 * (5 * 1 + 5 * 2 + 3) and summary["total"]["calls"] == 11
