"""Structured output on the embedded model: a JSON-schema grammar (llama-cpp-python's `response_format`
`{"type": "json_object", "schema": ...}`), `parsed` for generate and stream, the repair path, and a schema llama.cpp
cannot turn into a grammar refused before any generation.

Marker `local`; skipped unless llama-cpp-python and SmolLM2 are installed (as tests/backends/test_local_e2e.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llm.backends.local import LocalBackend
from llm.base import LLMConfig, LLMRequest, ResponseDone
from llm.errors import LLMStructuredOutputError, LLMValidationError
from tests.backends.test_local_e2e import MODEL

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(MODEL is None, reason="llama-cpp-python or the SmolLM2 model not installed (make test-local)"),
]


class Color(BaseModel):
    name: str = Field(max_length=20)
    warm: bool


def ask(max_tokens: int = 60, response_format: Any = Color) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "Name one color and say whether it is warm."}],
                      temperature=0, max_tokens=max_tokens, response_format=response_format)


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    shared = LocalBackend(LLMConfig(backend_type="local", model_name="", timeout=30))
    yield shared
    asyncio.run(shared.cleanup())


@pytest.fixture
def sent(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The `create_chat_completion` arguments of every generation the backend started."""
    calls: list[dict[str, Any]] = []
    start = LocalBackend._start

    def recording(self: LocalBackend, params: dict[str, Any]) -> Any:
        calls.append(params)
        return start(self, params)

    monkeypatch.setattr(LocalBackend, "_start", recording)
    return calls


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_grammar_is_sent_and_parsed_comes_back(backend: LocalBackend, sent: list[dict[str, Any]],
                                                       stream: bool) -> None:
    if stream:
        events = [event async for event in backend.stream(ask())]
        final = events[-1]
        assert isinstance(final, ResponseDone)
        response = final.response
    else:
        response = await backend.generate(ask())
    assert isinstance(response.parsed, Color) and response.parsed.name
    assert len(sent) == 1
    fmt = sent[0]["response_format"]
    assert fmt["type"] == "json_object"  # llama-cpp-python builds the grammar from "schema"
    assert fmt["schema"]["properties"]["name"]["maxLength"] == 20


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_an_answer_cut_short_is_repaired_once_then_a_typed_error(backend: LocalBackend,
                                                                       sent: list[dict[str, Any]],
                                                                       stream: bool) -> None:
    with pytest.raises(LLMStructuredOutputError) as caught:
        if stream:
            async for _ in backend.stream(ask(max_tokens=3)):
                pass
        else:
            await backend.generate(ask(max_tokens=3))  # 3 tokens cannot close the object
    assert len(sent) == 2
    assert caught.value.raw_text.startswith("{") and "not JSON" in caught.value.errors[0]
    assert sent[1]["messages"][-2]["role"] == "assistant" and "corrected JSON" in sent[1]["messages"][-1]["content"]


async def test_a_schema_llama_cpp_cannot_turn_into_a_grammar_is_refused(backend: LocalBackend,
                                                                       sent: list[dict[str, Any]]) -> None:
    schema = {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}
    with pytest.raises(LLMValidationError) as caught:
        await backend.generate(ask(response_format={"type": "json_schema",
                                                    "json_schema": {"name": "x", "schema": schema}}))
    assert caught.value.field == "response_format" and "grammar" in str(caught.value)
    assert sent == []
