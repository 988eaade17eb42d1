"""`import llm` stays cheap: no vendor SDK is loaded until a backend is constructed."""

from __future__ import annotations

import subprocess
import sys

VENDOR_SDKS = ("openai", "anthropic", "google.genai", "ollama", "httpx2", "httpx", "aiohttp", "llama_cpp")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(','.join(sorted(m for m in {VENDOR_SDKS!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return {name for name in result.stdout.strip().split(",") if name}


def test_import_llm_loads_no_vendor_sdk() -> None:
    assert loaded_after("import llm") == set()


def test_core_modules_load_no_vendor_sdk() -> None:
    assert loaded_after("import llm.base, llm.errors, llm.config, llm.manager, llm.backends") == set()


def test_naming_an_adapter_loads_no_sdk_until_constructed() -> None:
    assert loaded_after("from llm.backends import OpenAIBackend, ClaudeBackend, GeminiBackend, OllamaBackend") == set()


def test_constructing_a_backend_loads_only_its_own_sdk() -> None:
    loaded = loaded_after(
        "from llm.backends import OpenAIBackend\n"
        "from llm.base import LLMConfig\n"
        "import asyncio\n"
        "b = OpenAIBackend(LLMConfig(backend_type='openai', model_name='m', api_key='sk-test'))\n"
        "asyncio.run(b.initialize())"
    )
    assert "openai" in loaded
    assert not loaded & {"anthropic", "google.genai", "ollama"}
