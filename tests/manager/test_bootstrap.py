"""`initialize_llm_backends` (SCOUTAGENT.md 3.1, defect 9) and the global manager (defect 15).

Registration makes no call at all to a cloud vendor; Ollama is registered only when its models listing answers within
a short bound (or when enabled explicitly); the default follows `SCOUT_LLM_DEFAULT_BACKEND`, then OpenAI, then the
first of Claude, Gemini, DeepSeek, Ollama. The global manager keeps working across successive `asyncio.run()` calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import llm.config
import llm.manager
from llm.backends.base import LLMBackend
from llm.backends.bootstrap import OLLAMA_PROBE_TIMEOUT, register_configured_backends
from llm.base import LLMConfig, LLMRequest, LLMResponse
from llm.config import APIConfig, LLMRoutingConfig, LLMSettings, ScoutConfig
from llm.errors import LLMError
from llm.manager import LLMManager, get_llm_manager, initialize_llm_backends, reset_llm_manager
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import FakeServer, Hang, serving
from tests.manager.helpers import VENDOR, fake_for, request


def settings(servers: dict[str, FakeServer], **llm_settings: Any) -> ScoutConfig:
    """Settings pointing each named backend at its fake (keys only for those given)."""
    api: dict[str, Any] = {}
    for name, prefix in (("openai", "openai"), ("claude", "anthropic"), ("gemini", "gemini"),
                         ("deepseek", "deepseek")):
        if name in servers:
            server = servers[name]
            api[f"{prefix}_api_key"] = VENDOR["openai" if name == "deepseek" else name].api_key
            api[f"{prefix}_base_url"] = server.url + "/v1" if name in ("openai", "deepseek") else server.url
    if "ollama" in servers:
        api["ollama_base_url"] = servers["ollama"].url
    defaults = {"ollama_enabled": False, "local_enabled": False, "timeout": 5}  # the in-process model: off here
    routing = LLMRoutingConfig(default_backend=llm_settings.pop("default_backend", None))
    return ScoutConfig(api=APIConfig(**api), llm=LLMSettings(**{**defaults, **llm_settings}), llm_routing=routing)


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_registers_each_configured_backend_without_any_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm.manager")
    async with fake_for("openai") as openai, fake_for("claude") as claude, fake_for("deepseek") as deepseek:
        config = settings({"openai": openai, "claude": claude, "deepseek": deepseek}, retry_attempts=2,
                          retry_delay=0.5, anthropic_model="claude-haiku-4-5")
        async with LLMManager(config=config) as manager:
            await initialize_llm_backends(manager)
            names, default = manager.get_available_backends(), manager.get_default_backend()
            claude_config = manager.backends["claude"].config
            assert [len(s.requests) for s in (openai, claude, deepseek)] == [0, 0, 0]  # not even a models listing
            assert (await manager.generate(request(), "claude")).backend_type == "claude"
    assert names == ["openai", "claude", "deepseek"] and default == "openai"
    assert (claude_config.model_name, claude_config.timeout) == ("claude-haiku-4-5", 5)
    assert (claude_config.retry_attempts, claude_config.retry_delay) == (2, 0.5)
    assert claude_config.base_url == claude.url and claude_config.secret() == VENDOR["claude"].api_key
    assert caplog.text.count("Registered") == 3
    assert "LLM backends: openai, claude, deepseek (default: openai)" in caplog.text


@pytest.mark.parametrize(("wanted", "configured", "expected"), [
    ("claude", ("openai", "claude"), "claude"),
    ("gemini", ("openai", "claude"), "openai"),  # not registered: ignored
    (None, ("deepseek", "claude"), "claude"),
    (None, ("deepseek", "ollama"), "deepseek"),
])
async def test_default_backend_rule(wanted: str | None, configured: tuple[str, ...], expected: str) -> None:
    servers = {name: fake_for(name) for name in configured}
    for server in servers.values():
        await server.start()
    try:
        config = settings(servers, default_backend=wanted, ollama_enabled="ollama" in servers or None)
        async with LLMManager(config=config) as manager:
            await initialize_llm_backends(manager)
            assert manager.get_default_backend() == expected
    finally:
        for server in servers.values():
            await server.stop()


async def test_safe_to_call_twice_and_concurrently() -> None:
    async with fake_for("openai") as openai, fake_for("deepseek") as deepseek, LLMManager(
            config=settings({"openai": openai, "deepseek": deepseek})) as manager:
        await asyncio.gather(initialize_llm_backends(manager), initialize_llm_backends(manager))
        first = manager.backends
        await initialize_llm_backends(manager)
        assert manager.backends == first and all(manager.backends[n] is first[n] for n in first)
        assert manager.get_available_backends() == ["openai", "deepseek"]


async def test_ollama_registered_only_when_its_listing_answers() -> None:
    async with fake_for("ollama") as ollama:
        for enabled, url, registered, probes in ((None, ollama.url, True, 1), (False, ollama.url, False, 0),
                                                 (True, closed_url(), True, 0), (None, closed_url(), False, 0)):
            config = settings({}, ollama_enabled=enabled, ollama_model="qwen3:0.6b")
            config.api.ollama_base_url = url
            before = len(ollama.requests)
            start = time.monotonic()
            async with LLMManager(config=config) as manager:
                await initialize_llm_backends(manager)
                assert (manager.get_available_backends() == ["ollama"]) is registered, (enabled, url)
                if registered:
                    assert manager.backends["ollama"].config.model_name == "qwen3:0.6b"
            assert time.monotonic() - start < 0.5
            assert len(ollama.requests) - before == probes and ollama.count("/api/chat") == 0
            assert all(r.path == "/api/tags" for r in ollama.requests)


async def test_ollama_probe_is_bounded() -> None:
    assert OLLAMA_PROBE_TIMEOUT <= 2
    async with fake_for("ollama") as ollama:
        ollama.enqueue(Hang())
        config = settings({"ollama": ollama}, ollama_enabled=None)
        async with LLMManager(config=config) as manager:
            start = time.monotonic()
            assert await register_configured_backends(manager, config, probe_timeout=0.2) == []
            assert 0.2 <= time.monotonic() - start < 0.4 and manager.get_available_backends() == []



def test_global_manager_survives_successive_asyncio_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 15: SDK clients and the background task bound to a closed loop are released when that loop ends and
    rebuilt in the next one; concurrent first callers register once. Unclosed resources would fail the test."""
    with serving(FakeOpenAI()) as server:
        monkeypatch.setattr(llm.config, "_config", settings({"openai": server}))
        monkeypatch.setattr(llm.manager, "_manager", None)

        async def call(stream: bool) -> tuple[str, int]:
            await asyncio.gather(initialize_llm_backends(), initialize_llm_backends())
            manager = get_llm_manager()
            if stream:
                return "".join([c async for c in manager.stream_generate(request())]), id(manager)
            return (await manager.generate(request())).content, id(manager)

        results = [asyncio.run(call(stream)) for stream in (False, True, False)]
        assert get_llm_manager().get_available_backends() == ["openai"]
        asyncio.run(reset_llm_manager())
        assert llm.manager._manager is None and get_llm_manager() is not None
    assert [text for text, _ in results] == ["echo: hi"] * 3
    assert len({manager_id for _, manager_id in results}) == 1
    assert server.count("/chat") == 3


# -- issue 13: the local stand-in, missing SDKs, an unknown default ---------------------------------------------------


@pytest.fixture
def local_model(monkeypatch: pytest.MonkeyPatch) -> list[ScoutConfig]:
    """Make `local_backend_from_config` build a local backend that answers without llama.cpp; records its calls."""
    import llm.backends.local as local_module

    built: list[ScoutConfig] = []

    def fake_local(config: ScoutConfig) -> Any:
        built.append(config)
        return EchoBackend(LLMConfig(backend_type="local", model_name="SmolLM2-135M-Instruct.Q4_1.gguf"))

    monkeypatch.setattr(local_module, "local_backend_from_config", fake_local)
    return built


class EchoBackend(LLMBackend):
    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        return self._create_response("local answer", self.config.model_name)

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:  # type: ignore[override]
        yield "local answer"

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return [self.config.model_name]


@pytest.mark.parametrize(("remote", "enabled", "names", "default"), [
    (False, None, ["local"], "local"),
    (True, None, ["openai"], "openai"),
    (True, True, ["openai", "local"], "openai"),
    (False, False, [], None),
], ids=["no-remote", "remote", "remote+SCOUT_LOCAL_ENABLED=true", "SCOUT_LOCAL_ENABLED=false"])
async def test_the_local_model_is_the_default_alone_and_a_fallback_only_when_enabled(
        local_model: list[ScoutConfig], caplog: pytest.LogCaptureFixture, remote: bool, enabled: bool | None,
        names: list[str], default: str | None) -> None:
    caplog.set_level(logging.WARNING, logger="llm.manager")
    async with fake_for("openai") as openai:
        config = settings({"openai": openai} if remote else {}, local_enabled=enabled)
        async with LLMManager(config=config) as manager:
            await initialize_llm_backends(manager)
            await initialize_llm_backends(manager)
            assert (manager.get_available_backends(), manager.get_default_backend()) == (names, default)
    said = caplog.text.count("answering with the embedded SmolLM2-135M model, an offline stand-in")
    assert said == (1 if names == ["local"] else 0)
    assert len(openai.requests) == 0


async def test_a_configured_backend_without_its_sdk_is_recorded_with_the_extra(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "anthropic", None)  # as when the `anthropic` package is not installed
    async with fake_for("openai") as openai, fake_for("claude") as claude, LLMManager(
            config=settings({"openai": openai, "claude": claude})) as manager:
        await initialize_llm_backends(manager)
        assert manager.get_available_backends() == ["openai"]
        reason = manager.unavailable_backends["claude"]
        with pytest.raises(LLMError, match="Backend not available: claude: .*scout-llm\\[anthropic\\]"):
            await manager.generate(request(), "anthropic")
    assert "pip install 'scout-llm[anthropic]'" in reason and VENDOR["claude"].api_key not in reason
    assert len(claude.requests) == 0


@pytest.mark.parametrize(("wanted", "said"), [
    ("nonsense", "SCOUT_LLM_DEFAULT_BACKEND=nonsense is not a backend name (known: ollama, openai, claude (anthropic)"),
    ("gemini", "SCOUT_LLM_DEFAULT_BACKEND=gemini is not configured"),
])
async def test_an_unusable_default_backend_is_a_warning_naming_it(caplog: pytest.LogCaptureFixture, wanted: str,
                                                                  said: str) -> None:
    caplog.set_level(logging.WARNING, logger="llm.manager")
    async with fake_for("openai") as openai, LLMManager(config=settings({"openai": openai},
                                                                          default_backend=wanted)) as manager:
        await initialize_llm_backends(manager)
        assert manager.get_default_backend() == "openai"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "SCOUT_LLM_DEFAULT_BACKEND" in r.message]
    assert len(warnings) == 1 and warnings[0].message.startswith(said)


async def test_an_alias_as_default_backend(caplog: pytest.LogCaptureFixture) -> None:
    async with fake_for("openai") as openai, fake_for("claude") as claude:
        config = settings({"openai": openai, "claude": claude})
        config.llm_routing.default_backend = "anthropic"
        assert config.llm_routing.default_backend == "claude"
        async with LLMManager(config=config) as manager:
            await initialize_llm_backends(manager)
            assert manager.get_default_backend() == "claude"
