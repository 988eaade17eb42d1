"""The OpenAI and Anthropic adapters on the wire: the SDK's documented generic call on its public HTTP clients.

What must hold: the request is exactly what the SDK's typed call sends (on aiohttp and on httpx2); headers set through
the SDK's per-request options reach the wire; the key and base URL come from our settings, never from the SDK's
environment variables; `llm/` names no private SDK attribute or module; `raw_response` is still the SDK's typed object;
complete streams give their connection back to the pool; bad input never reaches the network; an answer of the wrong
shape is a typed error; the environment's proxy carries every call.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import llm.config
from llm.base import DeferredRaw, LLMBackend, LLMRequest
from llm.config import LLMSettings, ScoutConfig
from llm.errors import LLMConfigError, LLMServerError, LLMValidationError
from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.gemini_fake import VENDOR as GEMINI
from tests.fakes.ollama_fake import VENDOR as OLLAMA
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.server import FakeServer, Reply
from tests.fakes.vendor import Vendor
from tests.test_performance import PeerTracking

SDK_VENDORS = pytest.mark.parametrize("vendor", [OPENAI, CLAUDE], ids=["openai", "claude"])
TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
#: Headers that legitimately differ between two requests of one client: what the transport sets.
PER_REQUEST = {"content-length", "host", "connection"}
LLM_DIR = Path(__file__).resolve().parents[2] / "llm"


def hello(**extra: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=20, temperature=0.3, **extra)


def backend_for(vendor: Vendor, server: FakeServer, **kwargs: Any) -> LLMBackend:
    return vendor.backend_cls(vendor.config(server, timeout=5), **kwargs)  # type: ignore[call-arg]


async def generate_and_stream(backend: LLMBackend) -> tuple[str, str]:
    """One call and one stream on `backend` (closed after): their texts."""
    try:
        response = await backend.generate(hello())
        streamed = "".join([text async for text in backend.stream_generate(hello())])
    finally:
        await backend.cleanup()
    return response.content, streamed


async def typed_call(vendor: Vendor, client: Any) -> None:
    """The SDK's own typed call for the request `hello()` makes (the fake is not OpenAI: `max_tokens`)."""
    messages = [{"role": "user", "content": "hello"}]
    if vendor is OPENAI:
        await client.chat.completions.create(model=vendor.model, messages=messages, temperature=0.3, max_tokens=20)
    else:
        await client.messages.create(model=vendor.model, messages=messages, max_tokens=20,
                                     extra_body={"temperature": 0.3})


@SDK_VENDORS
@TRANSPORTS
async def test_the_generic_call_sends_what_the_sdk_typed_call_sends(vendor: Vendor, transport: str) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server, http_transport=transport)
        try:
            await backend.generate(hello())
            await typed_call(vendor, backend._client)
        finally:
            await backend.cleanup()
    ours, sdks = server.requests
    assert (ours.method, ours.path, ours.body) == (sdks.method, sdks.path, sdks.body)
    assert {k: v for k, v in ours.headers.items() if k not in PER_REQUEST} == \
        {k: v for k, v in sdks.headers.items() if k not in PER_REQUEST}
    assert ours.headers["x-stainless-retry-count"] == "0"


@SDK_VENDORS
@TRANSPORTS
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_extra_headers_reach_the_wire_through_the_sdk_request_options(vendor: Vendor, transport: str,
                                                                           stream: bool) -> None:
    async with vendor.fake_cls() as server:
        config = vendor.config(server, extra_params={"extra_headers": {"X-Trace-Id": "trace-42"}})
        backend = vendor.backend_cls(config, http_transport=transport)  # type: ignore[call-arg]
        try:
            if stream:
                assert [text async for text in backend.stream_generate(hello())]
            else:
                assert (await backend.generate(hello())).content
        finally:
            await backend.cleanup()
    (request,) = server.requests
    assert request.headers["x-trace-id"] == "trace-42"
    assert "x-trace-id" not in str(request.body) and "extra_headers" not in str(request.body)


@SDK_VENDORS
async def test_extra_headers_of_the_wrong_shape_are_refused_before_the_network(vendor: Vendor) -> None:
    async with vendor.fake_cls() as server:
        backend = vendor.backend_cls(vendor.config(server, extra_params={"extra_headers": {"X-N": 5}}))
        try:
            with pytest.raises(LLMValidationError) as caught:
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert caught.value.field == "extra_params.extra_headers"
    assert server.count() == 0


@pytest.mark.parametrize(("vendor", "variable", "default"), [
    (OPENAI, "OPENAI_BASE_URL", "https://api.openai.com/v1/"),
    (CLAUDE, "ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
], ids=["openai", "claude"])
async def test_the_sdk_never_takes_the_base_url_or_key_from_its_own_variables(
    vendor: Vendor, variable: str, default: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://attacker.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    async with vendor.fake_cls() as server:
        unset = vendor.backend_cls(replace_config(vendor, server, base_url=None))
        configured = backend_for(vendor, server)
        try:
            await unset.initialize()
            assert str(unset._client.base_url).rstrip("/") == default.rstrip("/")
            assert unset._client.api_key == vendor.api_key
            assert (await configured.generate(hello())).content
        finally:
            await unset.cleanup()
            await configured.cleanup()
    assert "from-the-environment" not in str(server.requests[0].headers)


def replace_config(vendor: Vendor, server: FakeServer, **changes: Any) -> Any:
    return replace(vendor.config(server), **changes)


#: What reaching into an SDK or its transport looks like: a private attribute of an SDK object, a private module or
#: attribute of an SDK or HTTP library, and the internals the old wire used by name.
PRIVATE_ACCESS = [
    # (a bare `client` is left out: `llm.sync` names its own SyncClient so; the SDK client is `self._client` here)
    re.compile(r"\b(?:sdk|http_client|transport|owner|session|stream|response|openai|anthropic|httpx2?|aiohttp"
               r"|genai|ollama|llama_cpp)\._[a-z]"),
    re.compile(r"\._client\._|(?<!backends)\._transport\b|\._pool\b|[\"']\._[a-z]"),
    re.compile(r"(?:from|import)\s+(?:openai|anthropic|httpx2?|aiohttp|google|ollama|llama_cpp)[\w.]*\._"),
    re.compile(r"_transport_for_url|FinalRequestOptions|_make_status_error|\._prepare_options|(?<!self)\._build_request"
               r"|\._prepare_request|_vendor\b|_base_client|\._process_response"),
]


def private_sdk_access(source: str) -> list[str]:
    return [match.group(0) for pattern in PRIVATE_ACCESS for match in pattern.finditer(source)]


def test_llm_names_no_private_sdk_attribute_or_module() -> None:
    found = {str(path.relative_to(LLM_DIR)): hits for path in sorted(LLM_DIR.rglob("*.py"))
             if (hits := private_sdk_access(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("line", [
    "owner = self.client._client._transport_for_url(url)",
    "options_cls = import_module('openai._models').FinalRequestOptions",
    "raise client._make_status_error_from_response(response)",
    "from openai._base_client import FinalRequestOptions",
    "session = http_client._transport.client",
    "from anthropic._vendor.httpx_aiohttp import AiohttpTransport",
    "x = sdk._exceptions.APIError",
    "session = self._client._client",
    "module = import_module(name + '._models')",
    "request = client._build_request(options, retries_taken=0)",
])
def test_the_private_access_check_catches_what_the_old_wire_did(line: str) -> None:
    assert private_sdk_access(line)


@pytest.mark.parametrize(("vendor", "typed", "content_of"), [
    (OPENAI, openai.types.chat.ChatCompletion, lambda raw: raw.choices[0].message.content),
    (CLAUDE, anthropic.types.Message, lambda raw: raw.content[0].text),
], ids=["openai", "claude"])
async def test_raw_response_is_the_sdk_typed_answer_built_when_read(vendor: Vendor, typed: type,
                                                                    content_of: Any) -> None:
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server)
        try:
            response = await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert isinstance(response.__dict__["_raw_response"], DeferredRaw)  # nothing built yet
    raw = response.raw_response
    assert isinstance(raw, typed) and response.raw_response is raw
    assert content_of(raw) == response.content
    assert "raw_response" not in repr(response)


@SDK_VENDORS
@TRANSPORTS
async def test_complete_streams_give_their_connection_back(vendor: Vendor, transport: str) -> None:
    server = vendor.fake_cls()
    tracking = PeerTracking(server)
    async with server:
        backend = backend_for(vendor, server, http_transport=transport)
        try:
            for _ in range(3):
                assert [text async for text in backend.stream_generate(hello())]
            assert (await backend.generate(hello())).content
        finally:
            await backend.cleanup()
    assert server.count(vendor.generate_path) == 4
    assert len(tracking.peers) == 1  # one connection served all four


@SDK_VENDORS
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_value_json_cannot_carry_is_refused_before_the_network(vendor: Vendor, stream: bool) -> None:
    tool = {"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "enum": {1, 2}}}}
    async with vendor.fake_cls() as server:
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMValidationError) as caught:
                if stream:
                    [event async for event in backend.stream(hello(tools=[tool]))]
                else:
                    await backend.generate(hello(tools=[tool]))
        finally:
            await backend.cleanup()
    assert caught.value.field.startswith("tools") and "cannot be sent as JSON" in str(caught.value)
    assert server.count() == 0


async def test_the_field_that_cannot_be_sent_is_named() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "pick", "schema": {"enum": {1, 2}}}}
    async with OPENAI.fake_cls() as server:
        backend = backend_for(OPENAI, server)
        try:
            with pytest.raises(LLMValidationError) as caught:
                await backend.generate(hello(extra_params={"response_format": schema}))
        finally:
            await backend.cleanup()
    assert caught.value.field == "extra_params.response_format"
    assert server.count() == 0


@pytest.mark.parametrize(("vendor", "body"), [
    (OPENAI, {"choices": "none"}), (OPENAI, ["not", "an", "object"]), (OPENAI, {"choices": [{"message": 7}]}),
    (CLAUDE, {"content": 5}), (CLAUDE, {"content": [{"type": "text", "text": "hi"}], "usage": "lots"}),
], ids=["openai-choices", "openai-array", "openai-message", "claude-content", "claude-usage"])
async def test_an_answer_of_the_wrong_shape_is_a_server_error(vendor: Vendor, body: Any) -> None:
    async with vendor.fake_cls() as server:
        server.enqueue(Reply(body=body))
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMServerError, match="malformed response") as caught:
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert caught.value.backend == vendor.name and caught.value.__cause__ is not None
    assert server.count(vendor.generate_path) == 1


@SDK_VENDORS
async def test_an_event_stream_answering_a_call_for_json_is_refused_unread(vendor: Vendor) -> None:
    async with vendor.fake_cls() as server:
        server.enqueue(Reply(body="data: {}\n\n" * 10, content_type="text/event-stream"))
        backend = backend_for(vendor, server)
        try:
            with pytest.raises(LLMServerError, match="event stream answered"):
                await backend.generate(hello())
        finally:
            await backend.cleanup()
    assert server.count(vendor.generate_path) == 1


@pytest.mark.parametrize(("then", "connections"), [("hang", 2), ("end", 1)], ids=["mid-answer", "body-complete"])
async def test_a_stream_closed_early_drops_its_connection_unless_the_body_was_complete(
    then: str, connections: int
) -> None:
    """An abandoned stream must not leave a half-read connection in the pool (the next call would read the rest);
    one whose body had fully arrived keeps it."""
    server = OPENAI.fake_cls()
    tracking = PeerTracking(server)
    async with server:
        server.enqueue(replace(OPENAI.dropped_stream, then=then))
        backend = backend_for(OPENAI, server)
        try:
            events = backend.stream(hello())
            await anext(events)
            await asyncio.sleep(0.05)  # the rest of the body (if any) arrives
            await events.aclose()
            assert (await backend.generate(hello())).content
        finally:
            await backend.cleanup()
    assert len(tracking.peers) == connections


#: Every SDK backend with each HTTP client it can run on.
EVERY_CLIENT = pytest.mark.parametrize(("vendor", "transport"), [
    (OPENAI, "aiohttp"), (OPENAI, "httpx"), (CLAUDE, "aiohttp"), (CLAUDE, "httpx"), (GEMINI, None), (OLLAMA, None)],
    ids=["openai-aiohttp", "openai-httpx", "claude-aiohttp", "claude-httpx", "gemini", "ollama"])


@EVERY_CLIENT
@pytest.mark.parametrize("how", ["SCOUT_LLM_PROXY", "SCOUT_LLM_TRUST_ENV"])
async def test_a_proxy_the_settings_allow_carries_every_call(vendor: Vendor, transport: str | None, how: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`SCOUT_LLM_PROXY` names the proxy of every backend; `SCOUT_LLM_TRUST_ENV=true` lets every client follow
    `HTTP_PROXY`. The proxy here is the fake itself, which answers absolute-form requests: a host that does not
    resolve is reached only through it, by the SDK's own call (the models list) too. Without either setting no proxy
    is used (tests/interactions/test_hostile_world.py)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with vendor.fake_cls() as server:
        if how == "SCOUT_LLM_PROXY":
            settings = LLMSettings(proxy=server.url)
        else:
            monkeypatch.setenv("HTTP_PROXY", server.url)
            settings = LLMSettings(trust_env=True)
        monkeypatch.setattr(llm.config, "_config", ScoutConfig(llm=settings))  # what get_config() returns
        unreachable = vendor.base_url(server).replace(server.url.removeprefix("http://"), "llm-vendor.invalid")
        options = {"http_transport": transport} if transport else {}
        backend = vendor.backend_cls(vendor.config(server, base_url=unreachable), **options)  # type: ignore[call-arg]
        assert await backend.health_check()
        content, streamed = await generate_and_stream(backend)
    assert content and streamed
    assert server.count(vendor.generate_path) == 2


@pytest.mark.parametrize("value", ["proxy.example:3128", "ftp://proxy.example", "http://proxy.example/path?q"])
def test_a_proxy_setting_that_is_not_a_proxy_url_is_a_config_error_that_keeps_it_secret(
        value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_LLM_PROXY", value)
    with pytest.raises(LLMConfigError, match="SCOUT_LLM_PROXY") as caught:
        ScoutConfig.from_environment(env_file=None)
    assert value not in str(caught.value)


def test_the_network_settings_take_nothing_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_LLM_PROXY", "http://user:s3cret@proxy.example:3128")
    settings = ScoutConfig.from_environment(env_file=None).llm
    assert settings.proxy is not None and settings.proxy.get_secret_value().endswith("@proxy.example:3128")
    assert "s3cret" not in repr(settings) and settings.trust_env is False
    monkeypatch.setenv("SCOUT_LLM_TRUST_ENV", "true")
    assert ScoutConfig.from_environment(env_file=None).llm.trust_env is True
