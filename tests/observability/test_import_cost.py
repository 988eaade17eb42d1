"""`import llm` and the observability modules load neither opentelemetry nor genai_prices (checked in a fresh
interpreter); a telemetry object with no SDK configured decides "off" without importing any SDK part."""

from __future__ import annotations

import subprocess
import sys

WATCHED = ("opentelemetry", "opentelemetry.sdk", "opentelemetry.trace", "opentelemetry.metrics", "genai_prices")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(','.join(sorted(m for m in {WATCHED!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return {name for name in result.stdout.strip().split(",") if name}


def test_import_llm_and_the_new_modules_load_neither() -> None:
    assert loaded_after("import llm, llm.manager, llm.accounting.usage, llm.accounting.pricing, llm.accounting.ledger, "
                        "llm.accounting.telemetry") == set()


def test_making_the_objects_loads_neither() -> None:
    code = ("from llm.accounting.telemetry import LLMTelemetry\nfrom llm.accounting.ledger import UsageLedger\n"
            "LLMTelemetry(); UsageLedger(budget_usd=1.0).check_budget()")
    assert loaded_after(code) == set()


def test_off_decision_loads_no_sdk() -> None:
    code = ("from llm.accounting.span import NOOP_SPAN\nfrom llm.accounting.telemetry import LLMTelemetry\n"
            "from llm.base import LLMRequest\n"
            "t = LLMTelemetry()\n"
            "assert t.start_call(LLMRequest(messages=[{'role': 'user', 'content': 'x'}]), 'm', 'openai') is NOOP_SPAN")
    loaded = loaded_after(code)
    assert "opentelemetry.sdk" not in loaded and "genai_prices" not in loaded


def test_genai_prices_loaded_by_the_first_price_only() -> None:
    code = ("from llm.accounting.pricing import cost_usd\n"
            "assert cost_usd('ollama', 'llama3', {'prompt_tokens': 1, 'completion_tokens': 1}) is None\n"
            "import sys; assert 'genai_prices' not in sys.modules\n"
            "assert cost_usd('openai', 'gpt-4o', {'prompt_tokens': 1, 'completion_tokens': 1}) > 0")
    assert "genai_prices" in loaded_after(code)
