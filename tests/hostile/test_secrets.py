"""Keys never leave in an error (issue 12, item 5): not in our message, not in any exception chained to it
(`__cause__`, `__context__`, group members), not in their `repr`, not in a printed traceback -- also when the vendor
echoes the key back, and when a transport exception holds the request headers.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llm.backends.openai import OpenAIBackend
from llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResponse
from llm.errors import LLMAuthenticationError, LLMBadRequestError, LLMError
from llm.manager import LLMManager
from tests.fakes.hostile import HostileServer, Raw
from tests.fakes.server import Reply
from tests.manager.helpers import FAST, VENDOR, managed

CANARY = "sk-proj-CANARY0123456789abcdefghijklmnopqrstuvwxyz"
CLAUDE_CANARY = "sk-ant-api03-CANARY0123456789abcdefghijklmnop"
GOOGLE_CANARY = "AIzaSyCANARY0123456789abcdefghijklmnop"
#: What the OpenAI API says to a wrong key (its real 401 body), here with the whole key in it.
ECHO_401 = {"error": {"message": f"Incorrect API key provided: {CANARY}. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.",
                      "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


def chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from `exc`: causes, contexts, group members."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(e for e in (item.__cause__, item.__context__) if e is not None)
        stack.extend(getattr(item, "exceptions", ()))


def everything_printed(exc: BaseException) -> str:
    """All the text an error can show: str and repr of each chained exception, their args, and the full traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    for item in chain(exc):
        parts += [str(item), repr(item), repr(item.args), repr(getattr(item, "__notes__", ""))]
        parts += [repr(value) for value in vars(item).values()]
    return "\n".join(parts)


def assert_clean(exc: BaseException, *secrets: str) -> None:
    text = everything_printed(exc)
    for secret in secrets:
        assert secret not in text
        assert secret[8:30] not in text  # no recognisable piece of it either
    assert "[REDACTED]" in text


def openai_backend(server: HostileServer, transport: str, key: str = CANARY) -> OpenAIBackend:
    config = LLMConfig(backend_type="openai", model_name="gpt-x", api_key=key, base_url=server.url + "/v1", timeout=3)
    return OpenAIBackend(config, http_transport=transport)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_a_key_the_vendor_echoes_is_redacted_from_the_whole_chain(transport: str, stream: bool) -> None:
    async with HostileServer(Raw(401, ECHO_401)) as server:
        manager = LLMManager(**FAST)
        try:
            await manager.register_backend(openai_backend(server, transport))
            with pytest.raises(LLMAuthenticationError) as caught:
                if stream:
                    [t async for t in manager.stream_generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))]
                else:
                    await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
            health = manager.get_backend_health("openai")
        finally:
            await manager.cleanup()
    assert "Incorrect API key provided: [REDACTED]" in str(caught.value)
    assert_clean(caught.value, CANARY)
    assert health is not None and CANARY not in str(health.last_error)
    assert server.count("/chat/completions") == 1
    assert server.requests[0][2]["authorization"] == f"Bearer {CANARY}"  # the key did go where it belongs


async def test_a_key_shaped_token_of_another_account_is_redacted_too() -> None:
    """Not only our own key: anything shaped like a key (another project's sk-..., a Google AIza...)."""
    other = "sk-proj-SOMEONEELSE0123456789abcdefghijkl"
    body = {"error": {"message": f"key {other} and {GOOGLE_CANARY} revoked", "type": "x", "code": "invalid_api_key"}}
    async with HostileServer(Raw(401, body)) as server:
        backend = openai_backend(server, "httpx")
        try:
            with pytest.raises(LLMAuthenticationError) as caught:
                await backend.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
        finally:
            await backend.cleanup()
    assert_clean(caught.value, other, GOOGLE_CANARY, CANARY)


@pytest.mark.parametrize(("kind", "key", "body", "status"), [
    ("claude", CLAUDE_CANARY,
     {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key: {CLAUDE_CANARY}"}},
     401),
    ("gemini", GOOGLE_CANARY,
     {"error": {"code": 400, "message": f"API key not valid: {GOOGLE_CANARY}", "status": "INVALID_ARGUMENT"}}, 400),
])
async def test_claude_and_gemini_echoes_are_redacted(kind: str, key: str, body: dict[str, Any], status: int) -> None:
    async with managed(kind, backend_options={"api_key": key}) as (manager, (server,)):
        server.api_key = key  # type: ignore[attr-defined]
        server.enqueue(Reply(status, body))
        with pytest.raises((LLMAuthenticationError, LLMBadRequestError)) as caught:
            await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
    assert_clean(caught.value, key)
    assert server.count(VENDOR[kind].generate_path) == 1


def test_transport_exception_holding_the_request_headers_is_scrubbed() -> None:
    """aiohttp's ClientResponseError prints its RequestInfo, headers included, in its repr: the chain must not."""
    url = URL("https://api.openai.com/v1/chat/completions")
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {CANARY}", "x-api-key": CANARY}))
    info = aiohttp.RequestInfo(url, "POST", headers, url)
    raw = aiohttp.ClientResponseError(info, (), status=401, message=f"denied for {CANARY}")
    assert CANARY in repr(raw)
    backend = OpenAIBackend(LLMConfig(backend_type="openai", model_name="m", api_key=CANARY))
    with pytest.raises(LLMError) as caught, backend._errors("m") as scope:
        scope.prepared = True
        try:
            raise raw
        except aiohttp.ClientResponseError as exc:
            raise ConnectionResetError(f"reset while sending with {CANARY}") from exc
    assert_clean(caught.value, CANARY)
    assert "Bearer" not in everything_printed(caught.value)


class LeakyBackend(LLMBackend):
    """A custom backend whose own error quotes its key (the contract re-raises custom errors as they are)."""

    def __init__(self) -> None:
        super().__init__(LLMConfig(backend_type="ollama", model_name="leaky", api_key=CANARY))

    async def initialize(self) -> bool:
        return True

    async def generate(self, request: LLMRequest) -> LLMResponse:
        raise RuntimeError(f"upstream refused key {self.config.secret()}")

    async def stream_generate(self, request: LLMRequest) -> Any:
        yield ""

    async def health_check(self) -> bool:
        return True

    def get_available_models(self) -> list[str]:
        return []


async def test_a_custom_backends_error_leaves_the_manager_without_its_key() -> None:
    async with LLMManager(**FAST) as manager:
        await manager.register_backend(LeakyBackend())
        with pytest.raises(RuntimeError) as caught:
            await manager.generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))
    assert_clean(caught.value, CANARY)


class LeakyStreamBackend(LeakyBackend):
    """Fails after the first chunk of a stream, quoting its key."""

    async def stream_generate(self, request: LLMRequest) -> Any:
        yield "partial"
        raise RuntimeError(f"stream cut, key {self.config.secret()}")


async def test_a_custom_backends_mid_stream_error_leaves_without_its_key() -> None:
    async with LLMManager(**FAST) as manager:
        await manager.register_backend(LeakyStreamBackend())
        with pytest.raises(LLMError) as caught:
            [text async for text in manager.stream_generate(LLMRequest(messages=[{"role": "user", "content": "x"}]))]
    assert caught.value.partial_content == "partial"  # type: ignore[attr-defined]
    assert_clean(caught.value, CANARY)
