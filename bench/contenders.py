"""The clients the benchmark compares, each behind the same two calls: `call(model) -> text` and `stream(model)`, an
async generator of text chunks. Every contender sends the same request (one user message, temperature 0.7,
64 max tokens) and hands back the answer's text, so each does the work a caller needs and nothing more.

    sdk            the vendor SDK (`openai` / `anthropic`) with its defaults (httpx2 transport)
    sdk-aiohttp    the vendor SDK on its own aiohttp transport (`DefaultAioHttpClient`)
    sdk-post       the SDK's generic `client.post` on its aiohttp transport: the SDK's HTTP, auth, errors and SSE
                   decoding without its typed params transform and response models (the call path scout-llm uses,
                   so the baseline of its latency targets)
    scout          scout-llm with its defaults, through `LLMManager.generate` / `stream_generate`
    scout-httpx    scout-llm told to use the SDK's httpx2 transport (`http_transport="httpx"`)
    litellm        LiteLLM's `acompletion` with its defaults (when installed: `pip install 'scout-llm[bench]'`)
    httpx2         floor: plain httpx2 POST + json.loads, no SDK
    aiohttp        floor: plain aiohttp POST + json.loads, no SDK

SDK imports happen inside `make()`, so a client process loads only what its contender needs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

MODEL = "bench-model"
HOLD_MODEL = "bench-hold"  # the fake server holds such a stream open after its first chunk
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
MAX_TOKENS = 64
TEMPERATURE = 0.7
API_KEY = "sk-bench-test"
ANTHROPIC_VERSION = "2023-06-01"
#: Pool size for the floors (enough for 1,000 open streams; all kept alive).
POOL = 1000

CONTENDERS = ("sdk", "sdk-aiohttp", "sdk-post", "scout", "scout-httpx", "litellm", "httpx2", "aiohttp")
DIALECTS = ("openai", "anthropic")


class Contender(Protocol):
    async def call(self, model: str = MODEL) -> str: ...

    def stream(self, model: str = MODEL) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


def available(name: str) -> bool:
    """Whether a contender can run here (LiteLLM is optional)."""
    if name != "litellm":
        return True
    import importlib.util

    return importlib.util.find_spec("litellm") is not None


async def make(name: str, dialect: str, url: str) -> Contender:
    """Build contender `name` for `dialect` ("openai" / "anthropic") against the fake server at `url`."""
    factories: dict[str, Callable[[str, str], Any]] = {
        "sdk": lambda d, u: SDKContender(d, u, aiohttp=False),
        "sdk-aiohttp": lambda d, u: SDKContender(d, u, aiohttp=True),
        "sdk-post": SDKPostContender,
        "scout": lambda d, u: ScoutContender(d, u, "auto"),
        "scout-httpx": lambda d, u: ScoutContender(d, u, "httpx"),
        "litellm": LiteLLMContender,
        "httpx2": Httpx2Contender,
        "aiohttp": AiohttpContender,
    }
    contender = factories[name](dialect, url)
    setup = getattr(contender, "setup", None)
    if setup is not None:
        await setup()
    return contender  # type: ignore[no-any-return]


# -- the vendor SDKs ---------------------------------------------------------------------------------------------------


class SDKContender:
    """`openai.AsyncOpenAI` / `anthropic.AsyncAnthropic`, defaults or on the SDK's aiohttp transport."""

    def __init__(self, dialect: str, url: str, *, aiohttp: bool) -> None:
        self.dialect = dialect
        if dialect == "openai":
            import openai as sdk

            base_url = url + "/v1"
        else:
            import anthropic as sdk  # type: ignore[no-redef]

            base_url = url
        self.sdk = sdk
        extra = {"http_client": sdk.DefaultAioHttpClient()} if aiohttp else {}
        self.client: Any = (sdk.AsyncOpenAI if dialect == "openai" else sdk.AsyncAnthropic)(
            api_key=API_KEY, base_url=base_url, **extra)

    async def _create(self, model: str, stream: bool) -> Any:
        if self.dialect == "openai":
            extra = {"stream_options": {"include_usage": True}} if stream else {}
            return await self.client.chat.completions.create(
                model=model, messages=MESSAGES, temperature=TEMPERATURE, max_completion_tokens=MAX_TOKENS,
                stream=stream, **extra)
        return await self.client.messages.create(
            model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, extra_body={"temperature": TEMPERATURE},
            stream=stream)

    async def call(self, model: str = MODEL) -> str:
        answer = await self._create(model, stream=False)
        if self.dialect == "openai":
            return answer.choices[0].message.content or ""
        return "".join(block.text for block in answer.content if block.type == "text")

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        chunks = await self._create(model, stream=True)
        try:
            async for chunk in chunks:
                if self.dialect == "openai":
                    text = chunk.choices[0].delta.content if chunk.choices else None
                else:
                    text = chunk.delta.text if chunk.type == "content_block_delta" else None
                if text:
                    yield text
        finally:
            await chunks.close()

    async def close(self) -> None:
        await self.client.close()


class SDKPostContender(SDKContender):
    """`client.post(path, body=..., cast_to=...)`, the SDK's documented way to send a custom request, on aiohttp:
    JSON bodies in, `json.loads` / plain dict stream events out."""

    def __init__(self, dialect: str, url: str) -> None:
        super().__init__(dialect, url, aiohttp=True)
        import httpx2

        self.path = "/chat/completions" if dialect == "openai" else "/v1/messages"
        self.raw = httpx2.Response
        self.stream_cls = self.sdk.AsyncStream[object]

    def _body(self, model: str, stream: bool) -> dict[str, Any]:
        limit = "max_completion_tokens" if self.dialect == "openai" else "max_tokens"
        body: dict[str, Any] = {"model": model, "messages": MESSAGES, "temperature": TEMPERATURE, limit: MAX_TOKENS}
        if stream:
            body["stream"] = True
            if self.dialect == "openai":
                body["stream_options"] = {"include_usage": True}
        return body

    async def call(self, model: str = MODEL) -> str:
        response = await self.client.post(self.path, body=self._body(model, False), cast_to=self.raw)
        answer = json.loads(response.content)
        if self.dialect == "openai":
            return answer["choices"][0]["message"]["content"] or ""  # type: ignore[no-any-return]
        return "".join(block["text"] for block in answer["content"] if block["type"] == "text")

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        chunks = await self.client.post(self.path, body=self._body(model, True), cast_to=object, stream=True,
                                        stream_cls=self.stream_cls)
        try:
            async for event in chunks:
                if self.dialect == "openai":
                    text = event["choices"][0]["delta"].get("content") if event["choices"] else None
                else:
                    text = event["delta"].get("text") if event["type"] == "content_block_delta" else None
                if text:
                    yield text
        finally:
            await chunks.close()


# -- scout-llm ---------------------------------------------------------------------------------------------------------


class ScoutContender:
    """scout-llm's `LLMManager` with one backend of the dialect's vendor."""

    def __init__(self, dialect: str, url: str, transport: str) -> None:
        self.dialect, self.url, self.transport = dialect, url, transport

    async def setup(self) -> None:
        from llm.backends import ClaudeBackend, OpenAIBackend
        from llm.base import LLMConfig, LLMRequest
        from llm.manager import LLMManager

        self._request = LLMRequest
        backend_type, cls, base_url = (("openai", OpenAIBackend, self.url + "/v1") if self.dialect == "openai"
                                       else ("claude", ClaudeBackend, self.url))
        config = LLMConfig(backend_type=backend_type, model_name=MODEL, api_key=API_KEY, base_url=base_url,
                           temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
        self.manager = LLMManager()
        backend = cls(config, http_transport=self.transport)  # type: ignore[arg-type]
        if not await self.manager.register_backend(backend):
            raise RuntimeError("scout-llm backend did not register")

    def _request_for(self, model: str) -> Any:
        extra = {} if model == MODEL else {"model_name_override": model}
        return self._request(messages=MESSAGES, extra_params=extra)

    async def call(self, model: str = MODEL) -> str:
        return (await self.manager.generate(self._request_for(model))).content

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        chunks = self.manager.stream_generate(self._request_for(model))
        try:
            async for text in chunks:
                yield text
        finally:
            await chunks.aclose()

    async def close(self) -> None:
        await self.manager.cleanup()


# -- LiteLLM -----------------------------------------------------------------------------------------------------------


class LiteLLMContender:
    """`litellm.acompletion` with its defaults, pointed at the fake server."""

    def __init__(self, dialect: str, url: str) -> None:
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        self.litellm = litellm
        self.kwargs = {"api_base": url + "/v1" if dialect == "openai" else url, "api_key": API_KEY,
                       "messages": MESSAGES, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
        self.prefix = "openai/" if dialect == "openai" else "anthropic/"

    async def call(self, model: str = MODEL) -> str:
        answer = await self.litellm.acompletion(model=self.prefix + model, **self.kwargs)
        return answer.choices[0].message.content or ""  # type: ignore[no-any-return]

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        chunks = await self.litellm.acompletion(model=self.prefix + model, stream=True, **self.kwargs)
        try:
            async for chunk in chunks:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    yield text
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def close(self) -> None:
        close = getattr(self.litellm, "close_litellm_async_clients", None)
        if close is not None:
            await close()


# -- floors: plain HTTP clients, no SDK -------------------------------------------------------------------------------


class _Wire:
    """What a floor sends and how it reads the answer, per dialect."""

    def __init__(self, dialect: str, url: str) -> None:
        self.dialect = dialect
        if dialect == "openai":
            self.url = url + "/v1/chat/completions"
            self.headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
        else:
            self.url = url + "/v1/messages"
            self.headers = {"x-api-key": API_KEY, "anthropic-version": ANTHROPIC_VERSION,
                            "content-type": "application/json"}

    def body(self, model: str, stream: bool) -> bytes:
        limit = "max_completion_tokens" if self.dialect == "openai" else "max_tokens"
        payload: dict[str, Any] = {"model": model, "messages": MESSAGES, "temperature": TEMPERATURE,
                                   limit: MAX_TOKENS}
        if stream:
            payload["stream"] = True
        return json.dumps(payload).encode()

    def text(self, raw: bytes) -> str:
        answer = json.loads(raw)
        if self.dialect == "openai":
            return answer["choices"][0]["message"]["content"] or ""  # type: ignore[no-any-return]
        return "".join(block["text"] for block in answer["content"] if block["type"] == "text")

    def delta(self, line: bytes) -> str | None:
        """The text of one SSE line, if it carries any."""
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            return None
        event = json.loads(line[6:])
        if self.dialect == "openai":
            choices = event.get("choices")
            return choices[0]["delta"].get("content") if choices else None
        return event["delta"].get("text") if event.get("type") == "content_block_delta" else None


class Httpx2Contender:
    """Floor: `httpx2.AsyncClient` with a 1,000-connection pool."""

    def __init__(self, dialect: str, url: str) -> None:
        import httpx2

        self.wire = _Wire(dialect, url)
        self.client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=POOL, max_keepalive_connections=POOL),
                                         timeout=60)

    async def call(self, model: str = MODEL) -> str:
        response = await self.client.post(self.wire.url, content=self.wire.body(model, False),
                                          headers=self.wire.headers)
        return self.wire.text(response.content)

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        request = self.client.stream("POST", self.wire.url, content=self.wire.body(model, True),
                                     headers=self.wire.headers)
        async with request as response:
            async for line in response.aiter_lines():
                text = self.wire.delta(line.encode())
                if text:
                    yield text

    async def close(self) -> None:
        await self.client.aclose()


class AiohttpContender:
    """Floor: `aiohttp.ClientSession` with a 1,000-connection pool."""

    def __init__(self, dialect: str, url: str) -> None:
        self.wire = _Wire(dialect, url)

    async def setup(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))

    async def call(self, model: str = MODEL) -> str:
        async with self.session.post(self.wire.url, data=self.wire.body(model, False),
                                     headers=self.wire.headers) as response:
            return self.wire.text(await response.read())

    async def stream(self, model: str = MODEL) -> AsyncIterator[str]:
        async with self.session.post(self.wire.url, data=self.wire.body(model, True),
                                     headers=self.wire.headers) as response:
            async for line in response.content:
                text = self.wire.delta(line)
                if text:
                    yield text

    async def close(self) -> None:
        await self.session.close()
