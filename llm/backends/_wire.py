"""How the OpenAI and Anthropic adapters put a request on the wire: plain JSON in, plain JSON out.

The SDKs' typed path (`client.chat.completions.create`, `client.messages.create`) builds and validates pydantic
models both ways and sends every request through httpx2's machinery. That costs about 1 ms of CPU per call on this
class of machine, four times what the HTTP exchange itself takes, and it is what caps throughput under concurrency
(bench/results/results.md). The adapters already build the request body as a dict and read the answer field by field,
so they skip the typed layer:

* `AiohttpWire` (the SDK's aiohttp transport, the default when aiohttp is installed): the SDK builds the request
  once, through its own pipeline (`_prepare_options`, `_build_request`, `_prepare_request`), which gives the URL and
  every header it sends (auth, `anthropic-version`, the `x-stainless-*` set with `retry-count: 0`); each call then
  POSTs its JSON body with those headers on the aiohttp session of that same transport (one pool per backend), and
  decodes the answer or the server-sent events itself. Error statuses and `error` events become the SDK's own
  exceptions (`client._make_status_error_from_response`, `openai.APIError`), so the adapters map one set of errors.
  A client whose requests need per-call authentication (an SDK `custom_auth` or provider runtime), or an SDK whose
  internals moved, falls back to `SDKWire`.
* `SDKWire` (the httpx2 transport): the SDK's documented generic call, `client.post(path, body=..., cast_to=...)`,
  which skips the models but keeps the SDK's whole request pipeline.

Both answer `(json, headers)` for a call and a `WireStream` of JSON events for a stream. `LLMResponse.raw_response`
still holds the SDK's typed object: the adapters defer building it until it is read (`llm.base.DeferredRaw`).
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from importlib import import_module
from typing import Any, ClassVar, Protocol

from llm.backends._adapter import CONNECT_TIMEOUT, SDKBackend, require_sdk
from llm.backends._transport import HttpTransport, resolve_transport, sdk_http_client
from llm.base import LLMConfig
from llm.errors import LLMValidationError

__all__ = ["END", "SKIP", "AiohttpWire", "EventRule", "SDKWire", "SSEParser", "Wire", "WireBackend", "WireStream",
           "encode_body", "make_wire"]

logger = logging.getLogger(__name__)

#: What an `EventRule` returns for an event that carries nothing (a ping) or that ends the stream (`[DONE]`).
SKIP: Any = object()
END: Any = object()

#: Headers the template leaves to aiohttp: it frames the body, manages the connection and negotiates the encodings
#: it can decode.
TRANSPORT_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding", "transfer-encoding"})


class Wire(Protocol):
    async def post(self, body: dict[str, Any]) -> tuple[Any, Mapping[str, str]]: ...

    async def stream(self, body: dict[str, Any]) -> WireStream: ...


class WireStream(Protocol):
    """The JSON events of one streamed answer; `close()` ends it and frees (or drops) its connection."""

    headers: Mapping[str, str]

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


class EventRule(Protocol):
    """A dialect's reading of one server-sent event: its JSON, `SKIP`, `END`, or the SDK's exception raised."""

    def __call__(self, event: str | None, data: bytes, stream: AiohttpStream) -> Any: ...


#: Request body keys -> the `LLMRequest` field they come from, to name it when its value cannot be sent.
BODY_FIELDS = {"messages": "messages", "system": "system_prompt", "tools": "tools", "tool_choice": "tool_choice"}


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request JSON; a value JSON cannot carry (an object, NaN) is the caller's error, reported before any network
    call with the request field it came from."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        field = next((key for key, value in body.items() if not _encodes(value)), "")
        name = BODY_FIELDS.get(field, f"extra_params.{field}" if field else "extra_params")
        raise LLMValidationError(f"{name}: cannot be sent as JSON ({exc})", field=name) from exc


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def make_wire(client: Any, path: str, transport: str, *, rule: EventRule, timeout: tuple[float, float]) -> Wire:
    """The wire for `client` (an `openai` / `anthropic` async client) posting to `path`.

    Args:
        transport: "aiohttp" or "httpx", resolved (see `llm.backends._transport.resolve_transport`).
        rule: the dialect's server-sent event rule (`AiohttpWire` only; the SDK applies its own).
        timeout: (read, connect) seconds, as the SDK client was given them.
    """
    sdk = import_module(type(client).__module__.split(".")[0])
    fallback = SDKWire(client, path, sdk.AsyncStream[object])
    http_client = getattr(client, "_client", None)
    per_call_auth = client.custom_auth is not None or getattr(client, "_provider_runtime", None) is not None
    aiohttp_transport = hasattr(getattr(http_client, "_transport", None), "get_client")
    if transport != "aiohttp" or not aiohttp_transport or not hasattr(http_client, "_transport_for_url"):
        return fallback
    if per_call_auth:
        return fallback  # a request the SDK signs per call cannot be built once
    return AiohttpWire(client, path, rule=rule, timeout=timeout, fallback=fallback)


class WireBackend(SDKBackend):
    """An `SDKBackend` on a Stainless-generated SDK (`openai`, `anthropic`) whose generations go through a `Wire`.

    A subclass declares its SDK (`sdk_module`, `sdk_client`), the generation endpoint (`wire_path`) and how to read its
    server-sent events (`_event_rule`); the client (SDK retries off, explicit timeouts, the chosen transport), the
    wire next to it, `_send` and `_open_stream` are made here. `http_transport` is "auto", "aiohttp" or "httpx"
    (`llm.backends._transport`).
    """

    #: The SDK's import name, which is also its scout-llm extra.
    sdk_module: ClassVar[str]
    #: The SDK's async client class, e.g. "AsyncOpenAI".
    sdk_client: ClassVar[str]
    #: The generation endpoint, relative to the client's base URL.
    wire_path: ClassVar[str]
    #: The base URL when none is configured; None leaves the choice to the SDK.
    default_base_url: ClassVar[str | None] = None

    def __init__(self, config: LLMConfig, *, http_transport: HttpTransport = "auto") -> None:
        require_sdk(self.sdk_module, self.sdk_module, self.display_name)
        resolve_transport(http_transport)  # an impossible choice fails here, not at the first call
        super().__init__(config)
        self.http_transport: HttpTransport = http_transport
        self._wire: Wire | None = None

    @abstractmethod
    def _event_rule(self) -> EventRule:
        """How this API's server-sent events read (see `EventRule`)."""

    def _create_client(self) -> Any:
        sdk = import_module(self.sdk_module)
        seconds = float(self.config.timeout)
        connect = min(seconds, CONNECT_TIMEOUT)
        timeout = sdk.Timeout(seconds, connect=connect)
        client = getattr(sdk, self.sdk_client)(
            api_key=self.config.secret(),
            base_url=self.config.base_url or self.default_base_url,
            timeout=timeout,
            max_retries=0,  # the manager is the one retry owner
            http_client=sdk_http_client(sdk, self.http_transport, timeout),
        )
        self._wire = make_wire(client, self.wire_path, resolve_transport(self.http_transport),
                               rule=self._event_rule(), timeout=(seconds, connect))
        return client

    async def _send(self, params: dict[str, Any]) -> Any:
        assert self._wire is not None, "_create_client makes the wire"
        return await self._wire.post(params)

    async def _open_stream(self, params: dict[str, Any]) -> Any:
        assert self._wire is not None, "_create_client makes the wire"
        return await self._wire.stream(params)


# -- the SDK's generic call -------------------------------------------------------------------------------------------


class SDKWire:
    """`client.post(path, content=...)`: the SDK's request pipeline and transport, no typed models; the body is
    encoded once, here, as on the aiohttp wire (its default `content-type` is JSON)."""

    __slots__ = ("client", "path", "stream_cls")

    def __init__(self, client: Any, path: str, stream_cls: type) -> None:
        self.client = client
        self.path = path
        self.stream_cls = stream_cls

    async def post(self, body: dict[str, Any]) -> tuple[Any, Mapping[str, str]]:
        import httpx2

        response = await self.client.post(self.path, content=encode_body(body), cast_to=httpx2.Response)
        return json.loads(response.content), response.headers

    async def stream(self, body: dict[str, Any]) -> WireStream:
        stream = await self.client.post(self.path, content=encode_body(body), cast_to=object, stream=True,
                                        stream_cls=self.stream_cls)
        return _SDKStream(stream)


class _SDKStream:
    __slots__ = ("_stream", "headers")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.headers: Mapping[str, str] = stream.response.headers

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._stream.close()


# -- the SDK's request on aiohttp -------------------------------------------------------------------------------------


async def request_template(client: Any, path: str) -> tuple[str, dict[str, str]]:
    """The URL and headers `client` sends with a POST to `path`, built by the SDK's own request pipeline, minus the
    headers aiohttp sets itself."""
    options_cls = import_module(type(client).__module__.split(".")[0] + "._models").FinalRequestOptions
    options = await client._prepare_options(options_cls.construct(method="post", url=path, json_data={}))
    request = client._build_request(options, retries_taken=0)
    await client._prepare_request(request)
    headers = {key: value for key, value in request.headers.items() if key.lower() not in TRANSPORT_HEADERS}
    return str(request.url), headers


class AiohttpWire:
    """POSTs JSON with the SDK's URL and headers on the aiohttp session of the SDK's transport (the proxy transport
    when the environment's `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` route the URL through one, as httpx2 decides)."""

    __slots__ = ("_broken", "_fallback", "_headers", "_options", "_session", "_url", "client", "path", "rule")

    def __init__(self, client: Any, path: str, *, rule: EventRule, timeout: tuple[float, float],
                 fallback: SDKWire) -> None:
        import aiohttp

        self.client = client
        self.path = path
        self.rule = rule
        read, connect = timeout
        # Per request, as the SDK's transport sends them: its timeouts (waiting for a pooled connection, connecting,
        # each read) and, once known, its proxy.
        self._options: dict[str, Any] = {
            "timeout": aiohttp.ClientTimeout(total=None, connect=read, sock_connect=connect, sock_read=read)}
        self._fallback = fallback
        self._broken = False
        self._url = ""
        self._headers: dict[str, str] = {}
        self._session: Any = None

    async def _live_session(self) -> Any:
        session = self._session
        if session is None or session.closed:
            session = await self._ready()
        return session

    async def _ready(self) -> Any:
        """The session to send on (the transport's, made on first use) after the request template; None when the
        SDK cannot give the template (its internals moved): the generic call then serves, correct if slower."""
        if self._broken:
            return None
        if not self._url:
            try:
                self._url, self._headers = await request_template(self.client, self.path)
            except (AttributeError, TypeError, ImportError) as exc:
                logger.warning("the fast path cannot build requests with this SDK version (%r); using client.post",
                               exc)
                self._broken = True
                return None
        import aiohttp
        import httpx2

        # The transport httpx2 would pick for this URL: the main one, or the proxy one the environment asks for.
        owner = self.client._client._transport_for_url(httpx2.URL(self._url))
        if not hasattr(owner, "get_client"):
            logger.warning("the fast path cannot use the %s transport; using client.post", type(owner).__name__)
            self._broken = True
            return None
        if not isinstance(owner.client, aiohttp.ClientSession) or owner.client.closed:
            owner.client = owner.get_client()
        proxy = owner.proxy
        if proxy is not None:
            auth = aiohttp.BasicAuth(*proxy.auth) if proxy.auth else None
            self._options.update(proxy=str(proxy.url), proxy_auth=auth, proxy_headers=dict(proxy.headers))
        self._session = owner.client
        return self._session

    async def post(self, body: dict[str, Any]) -> tuple[Any, Mapping[str, str]]:
        data = encode_body(body)
        session = await self._live_session()
        if session is None:
            return await self._fallback.post(body)
        async with session.post(self._url, data=data, headers=self._headers, **self._options) as response:
            content = await response.read()
            if response.status >= 400:
                raise self.status_error(response.status, response.raw_headers, content)
            return json.loads(content), response.headers

    async def stream(self, body: dict[str, Any]) -> WireStream:
        data = encode_body(body)
        session = await self._live_session()
        if session is None:
            return await self._fallback.stream(body)
        response = await session.post(self._url, data=data, headers=self._headers, **self._options)
        if response.status >= 400:
            try:
                content = await response.read()
            finally:
                response.release()
            raise self.status_error(response.status, response.raw_headers, content)
        return AiohttpStream(response, self)

    def http_response(self, status: int, raw_headers: Any, content: bytes = b"") -> Any:
        """An `httpx2.Response` standing for an aiohttp one, as the SDK's exceptions carry."""
        import httpx2

        return httpx2.Response(status, headers=list(raw_headers), content=content,
                               request=httpx2.Request("POST", self._url))

    def status_error(self, status: int, raw_headers: Any, content: bytes) -> Exception:
        """The SDK's exception for an error status, built by the SDK from the response."""
        return self.client._make_status_error_from_response(  # type: ignore[no-any-return]
            self.http_response(status, raw_headers, content))


class AiohttpStream:
    """The events of one aiohttp response, read by the dialect's `EventRule`."""

    __slots__ = ("_events", "_response", "headers", "wire")

    def __init__(self, response: Any, wire: AiohttpWire) -> None:
        self._response = response
        self.wire = wire
        self.headers: Mapping[str, str] = response.headers
        self._events = self._read()

    @property
    def status(self) -> int:
        return self._response.status  # type: ignore[no-any-return]

    def http_response(self) -> Any:
        return self.wire.http_response(self._response.status, self._response.raw_headers)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events

    async def _read(self) -> AsyncGenerator[Any, None]:
        rule = self.wire.rule
        parser = SSEParser()
        ended = False
        async for chunk in self._response.content.iter_any():
            for event, data in parser.feed(chunk):
                if ended:
                    continue  # read on to the end of the body, so the connection goes back to the pool
                item = rule(event, data, self)
                if item is END:
                    ended = True
                elif item is not SKIP:
                    yield item
        for event, data in parser.finish():
            item = rule(event, data, self)
            if not ended and item is not SKIP and item is not END:
                yield item

    async def close(self) -> None:
        await self._events.aclose()
        response = self._response
        if response.content.at_eof():
            response.release()
        else:
            response.close()  # abandoned mid-answer: drop the connection rather than read the rest


class SSEParser:
    """Server-sent events out of body chunks: (event name or None, data lines joined by "\\n").

    Lines may end in "\\n", "\\r\\n" or "\\r" and split anywhere across chunks; comments, `id` and `retry` are
    ignored; an event is dispatched at its blank line when it has a name or data. One left unfinished at the end of
    the body is dropped, as the SSE specification says.
    """

    __slots__ = ("data", "event", "pending")

    def __init__(self) -> None:
        self.pending = b""
        self.event: str | None = None
        self.data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if self.pending:
            chunk = self.pending + chunk
        lines = chunk.splitlines(keepends=True)
        if not lines:
            return []
        # An unfinished last line waits for the next chunk; so does one ending in "\r", which may be half a "\r\n".
        self.pending = b"" if lines[-1].endswith(b"\n") else lines.pop()
        events = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line:
                if self.data or self.event is not None:
                    events.append((self.event, b"\n".join(self.data)))
                self.event, self.data = None, []
            elif line.startswith(b"data:"):
                self.data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                self.event = (line[7:] if line[6:7] == b" " else line[6:]).decode()
        return events

    def finish(self) -> list[tuple[str | None, bytes]]:
        """Events completed by the end of the body: a last line held back for a "\\n" that never came."""
        return self.feed(b"\n") if self.pending else []
