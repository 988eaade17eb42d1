"""The shapes ScoutAgent callers rely on (contract section 7), kept as the original had them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

import llm
import llm.backends
from llm.base import LLMBackend, LLMBackendType, LLMConfig, LLMRequest, LLMResponse


def field_table(cls: type) -> list[tuple[str, object]]:
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        rows.append((f.name, default))
    return rows


def test_llm_config_fields_order_and_defaults() -> None:
    assert field_table(LLMConfig) == [
        ("backend_type", "required"), ("model_name", "required"), ("api_key", None), ("base_url", None),
        ("temperature", 0.7), ("max_tokens", 4096), ("timeout", 60), ("retry_attempts", 3), ("retry_delay", 1.0),
        ("extra_params", {}),
    ]


def test_llm_request_fields_order_and_defaults() -> None:
    assert field_table(LLMRequest) == [
        ("messages", "required"), ("system_prompt", None), ("temperature", None), ("max_tokens", None),
        ("stream", False), ("tools", None), ("tool_choice", None), ("extra_params", {}),
        ("response_format", None),  # scout-llm's addition, after the contract's fields
    ]


def test_llm_response_keeps_the_contract_fields_first() -> None:
    names = [name for name, _ in field_table(LLMResponse)]
    assert names[:9] == ["content", "model", "backend_type", "usage", "metadata", "success", "error",
                         "response_time", "raw_response"]
    response = LLMResponse(content="hi", model="m", backend_type="openai",
                           usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
                           metadata={}, success=True, response_time=1.5)
    assert response.usage.get("total_tokens", 0) == 3 and response.tool_calls == [] and response.error is None


def test_backend_type_values_and_string_equality() -> None:
    assert [member.value for member in LLMBackendType] == ["ollama", "openai", "claude", "gemini", "deepseek", "local"]
    assert LLMBackendType("deepseek") is LLMBackendType.DEEPSEEK
    assert LLMBackendType.OPENAI == "openai" and f"{LLMBackendType.CLAUDE}" == "claude"
    assert {"openai": 1}[LLMBackendType.OPENAI] == 1


def test_config_accepts_a_string_backend_type_and_hides_the_key() -> None:
    config = LLMConfig(backend_type="openai", model_name="gpt-4.1-mini", api_key="sk-hidden-1")  # type: ignore[arg-type]
    assert config.backend_type is LLMBackendType.OPENAI
    assert "sk-hidden-1" not in repr(config) and config.secret() == "sk-hidden-1"


def test_package_exports() -> None:
    for name in ("LLMBackend", "LLMRequest", "LLMResponse", "LLMConfig", "LLMManager", "get_llm_manager",
                 "initialize_llm_backends", "OllamaBackend", "OpenAIBackend", "ClaudeBackend", "GeminiBackend",
                 "DeepSeekBackend", "LLMBackendType", "LLMError"):
        assert name in llm.__all__ and getattr(llm, name) is not None
    assert sorted(llm.backends.__all__) == ["ClaudeBackend", "DeepSeekBackend", "GeminiBackend", "LocalBackend",
                                            "OllamaBackend", "OpenAIBackend"]
    for name in llm.__all__:
        getattr(llm, name)


class CustomBackend(LLMBackend):
    """The README's 'add a backend' example: five methods make a working backend."""

    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response("custom: " + str(request.messages[-1]["content"]), self.resolve_model(request))

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        for word in ("custom", " stream"):
            yield word

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return []


async def test_a_custom_backend_gets_the_typed_stream_for_free() -> None:
    backend = CustomBackend(LLMConfig(backend_type=LLMBackendType.OLLAMA, model_name="mine"))
    request = LLMRequest(messages=[{"role": "user", "content": "x"}])
    assert (await backend.generate(request)).content == "custom: x"
    events = [event async for event in backend.stream(request)]
    assert events[-1].response.content == "custom stream"  # type: ignore[union-attr]
    assert events[-1].response.backend_type == "ollama"  # type: ignore[union-attr]


def test_effective_config_honours_zero_and_explicit_values() -> None:
    backend = CustomBackend(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m", temperature=0.7,
                                      max_tokens=4096, extra_params={"top_p": 0.9}))
    request = LLMRequest(messages=[{"role": "user", "content": "x"}], temperature=0.0, max_tokens=16,
                         extra_params={"temperature": 1.5, "model_name_override": "other"})
    effective = backend._get_effective_config(request)
    assert effective == {"temperature": 0.0, "max_tokens": 16, "top_p": 0.9}
    assert backend.resolve_model(request) == "other"


def test_prepare_messages_puts_the_system_prompt_first_without_mutating() -> None:
    backend = CustomBackend(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m"))
    messages = [{"role": "user", "content": "x"}]
    request = LLMRequest(messages=messages, system_prompt="be brief")
    assert backend._prepare_messages(request) == [{"role": "system", "content": "be brief"}, *messages]
    assert len(messages) == 1


@pytest.mark.parametrize("name", ["OpenAIBackend", "DeepSeekBackend"])
def test_missing_key_is_a_config_error_naming_the_variable(name: str) -> None:
    import asyncio

    from llm.errors import LLMConfigError

    cls = getattr(llm.backends, name)
    backend = cls(LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m"))
    with pytest.raises(LLMConfigError, match="SCOUT_(OPENAI|DEEPSEEK)_API_KEY"):
        asyncio.run(backend.initialize())


def test_deepseek_defaults_to_its_own_url() -> None:
    from llm.backends import DeepSeekBackend

    backend = DeepSeekBackend(LLMConfig(backend_type=LLMBackendType.DEEPSEEK, model_name="deepseek-chat",
                                        api_key="ds-test"))
    assert backend.base_url == "https://api.deepseek.com/v1"
