"""Backend names in the Python API (issue 13): aliases, `provider:model`, and errors that list what can be chosen; and
the reason a health probe failed, kept in `BackendHealth.last_error`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm.base import LLMBackendType
from llm.core.names import canonical_backend, describe_known, split_model_ref
from llm.errors import LLMConfigError, LLMError, LLMValidationError
from llm.manager import LLMManager
from tests.fakes.server import Hang, Reply
from tests.manager.helpers import FAST, backend_for, fake_for, gen_count, request


@pytest.mark.parametrize(("ref", "expected"), [
    ("anthropic:claude-sonnet-4-6", ("claude", "claude-sonnet-4-6")),
    ("Google:gemini-2.5-pro", ("gemini", "gemini-2.5-pro")),
    ("ollama:qwen3:8b", ("ollama", "qwen3:8b")),
    ("qwen3:8b", (None, "qwen3:8b")),
    ("gpt-4o", (None, "gpt-4o")),
    ("openai:", (None, "openai:")),
])
def test_split_model_ref(ref: str, expected: tuple[str | None, str]) -> None:
    assert split_model_ref(ref) == expected


def test_canonical_names() -> None:
    assert [canonical_backend(n) for n in ("Anthropic", " google ", LLMBackendType.CLAUDE, "nonsense")] == [
        "claude", "gemini", "claude", "nonsense"]
    assert describe_known() == "ollama, openai, claude (anthropic), gemini (google), deepseek, local"


@pytest.fixture
async def two_backends() -> AsyncIterator[tuple[LLMManager, dict[str, object]]]:
    async with fake_for("openai") as openai, fake_for("claude") as claude, LLMManager(
            **FAST, health_check_interval=None) as manager:
        await manager.register_backend(backend_for("openai", openai))
        await manager.register_backend(backend_for("claude", claude))
        yield manager, {"openai": openai, "claude": claude}


@pytest.mark.parametrize("name", ["anthropic", "ANTHROPIC", "claude", LLMBackendType.CLAUDE])
async def test_generate_accepts_aliases(two_backends: tuple[LLMManager, dict[str, object]],
                                        name: str | LLMBackendType) -> None:
    manager, servers = two_backends
    response = await manager.generate(request(), backend_type=name)
    assert response.backend_type == "claude"
    assert gen_count("claude", servers["claude"]) == 1 and gen_count("openai", servers["openai"]) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
async def test_provider_model_picks_backend_and_model(two_backends: tuple[LLMManager, dict[str, object]],
                                                      stream: bool) -> None:
    manager, servers = two_backends
    original = request()
    if stream:
        text = "".join([chunk async for chunk in manager.stream_generate(original, "anthropic:claude-haiku-4-5")])
        assert text == "echo: hi"
    else:
        response = await manager.generate(original, backend_type="anthropic:claude-haiku-4-5")
        assert response.backend_type == "claude" and response.model.startswith("claude-haiku-4-5")
    claude = servers["claude"]
    assert claude.requests[-1].body["model"] == "claude-haiku-4-5"  # type: ignore[attr-defined]
    assert original.extra_params == {}, "the caller's request is not changed"


async def test_provider_model_does_not_carry_the_model_to_a_fallback(
        two_backends: tuple[LLMManager, dict[str, object]]) -> None:
    manager, servers = two_backends
    down = Reply(status=503, body={"error": {"message": "down"}})
    servers["openai"].enqueue(*[down] * 5)  # type: ignore[attr-defined]  # more than the attempts
    response = await manager.generate(request(), backend_type="openai:gpt-4o")
    assert response.backend_type == "claude"
    configured = manager.backends["claude"].config.model_name
    assert servers["claude"].requests[-1].body["model"] == configured != "gpt-4o"  # type: ignore[attr-defined]


async def test_an_unknown_name_lists_the_known_and_registered_ones(
        two_backends: tuple[LLMManager, dict[str, object]]) -> None:
    manager, servers = two_backends
    with pytest.raises(LLMValidationError) as caught:
        await manager.generate(request(), backend_type="bard")
    message = str(caught.value)
    assert message.startswith("Backend not available: bard: no backend has that name")
    assert "claude (anthropic)" in message and "registered: openai, claude" in message
    assert caught.value.field == "backend_type"
    assert all(len(server.requests) == 0 for server in servers.values())  # type: ignore[attr-defined]


async def test_a_known_name_not_registered_says_how_to_configure_it(
        two_backends: tuple[LLMManager, dict[str, object]]) -> None:
    manager, _ = two_backends
    with pytest.raises(LLMConfigError, match=r"Backend not available: gemini: not configured \(set "
                                             r"SCOUT_GEMINI_API_KEY or GOOGLE_API_KEY or GEMINI_API_KEY\)"):
        await manager.generate(request(), backend_type="google")
    manager.mark_unavailable("deepseek", "DeepSeek library not available")
    with pytest.raises(LLMError, match="deepseek: DeepSeek library not available"):
        [chunk async for chunk in manager.stream_generate(request(), "deepseek")]


async def test_a_failed_probe_keeps_its_reason() -> None:
    async with fake_for("openai") as openai, LLMManager(**FAST, health_check_interval=None,
                                                        health_check_timeout=0.3) as manager:
        await manager.register_backend(backend_for("openai", openai, api_key="sk-bad-key-7"))
        assert await manager.check_health() == {"openai": False}
        health = manager.get_backend_health("openai")
        assert health is not None and health.last_probe_ok is False
        assert health.last_error is not None and health.last_error.startswith("LLMAuthenticationError")
        assert "sk-bad-key-7" not in health.last_error
        openai.enqueue(Hang())
        await manager.check_health()
        assert manager.get_backend_health("openai").last_error == (  # type: ignore[union-attr]
            "health check gave no answer within 0.3s")
