"""The HTTP clients under every SDK adapter: which transport, how big a pool, how much an answer may inflate to, what
they take from the environment (`llm.backends.sdk.network`), and which transport errors lie underneath an SDK
exception.

Every client is built from `client_options`: the OpenAI and Anthropic SDKs' public aiohttp client
(`openai.DefaultAioHttpClient`, `anthropic.DefaultAioHttpClient`) when aiohttp is installed (`scout-llm[fast]`), else
the SDK's `httpx2`; the `httpx2.AsyncClient` handed to google-genai (`HttpOptions(httpx_async_client=...)`); the
`httpx.AsyncClient` the ollama client builds from its keyword arguments. Everything goes through public interfaces
(the client classes, httpx's and httpx2's `limits`, `headers`, `event_hooks`, `trust_env`, `proxy` and
`AsyncByteStream`). See the README for the settings.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeAlias

from llm.backends.sdk.framing import EventBounds, LineBounds, LineHolder, ResponseTooLarge
from llm.backends.sdk.network import network_options
from llm.core.chains import exception_chain
from llm.errors import LLMConfigError

__all__ = [
    "MAX_CONNECTIONS", "HttpTransport", "LimitResponse", "LimitedStream", "ResponseLimits", "ResponseTooLarge",
    "aiohttp_installed", "asks_for_stream", "client_options", "pool_limits", "response_too_large", "sdk_http_client",
    "transport_failure",
]

HttpTransport: TypeAlias = Literal["auto", "aiohttp", "httpx"]
#: The transports a backend accepts: "auto" is aiohttp when installed, else the SDK's httpx2.
HTTP_TRANSPORTS: frozenset[str] = frozenset({"auto", "aiohttp", "httpx"})

#: Connections one backend's client may hold open (1,000 concurrent streams fit); all of them are kept alive, since
#: the SDKs' default pool keeps 100 idle and a burst of 256 calls would close and reopen the rest each time.
MAX_CONNECTIONS = 1000
#: How long an idle pooled connection stays open (seconds); the httpx2 and aiohttp default.
KEEPALIVE_EXPIRY = 5.0

#: A whole (non-streamed) answer, decoded: far above any real chat completion, far below what hurts.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: One server-sent event, decoded: a real event is a chunk of a few hundred bytes.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
#: The encodings `LimitedStream` decodes, and the only ones asked for.
ACCEPT_ENCODING = "gzip, deflate"
#: The largest piece one decompression step may produce.
DECODE_PIECE = 64 * 1024
#: Streamed content types and how their events are framed: server-sent events end at a blank line, NDJSON (Ollama's
#: https://github.com/ollama/ollama/blob/main/docs/api.md#streaming-responses) at each line end.
FRAMINGS: dict[str, Literal["event", "line"]] = {"text/event-stream": "event", "application/x-ndjson": "line"}
#: Whether a request asked for a streamed answer (then its body is bounded per event, else as a whole).
StreamedRequest: TypeAlias = Callable[[Any], bool]


def aiohttp_installed() -> bool:
    """Whether aiohttp can be imported (checked without importing it)."""
    return importlib.util.find_spec("aiohttp") is not None


def resolve_transport(transport: str) -> Literal["aiohttp", "httpx"]:
    """"auto" -> "aiohttp" when installed, else "httpx"; an explicit choice is checked.

    Raises:
        LLMConfigError: for an unknown transport, or "aiohttp" when aiohttp is not installed.
    """
    if transport not in HTTP_TRANSPORTS:
        raise LLMConfigError(f"http_transport must be one of {sorted(HTTP_TRANSPORTS)}, got {transport!r}")
    if transport == "httpx":
        return "httpx"
    if aiohttp_installed():
        return "aiohttp"
    if transport == "aiohttp":
        raise LLMConfigError("the aiohttp transport needs aiohttp. Install with: pip install 'scout-llm[fast]'")
    return "httpx"


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """How much one response may inflate to, decoded (bytes).

    Attributes:
        max_response_bytes: a whole body (an answer, an error, a models list).
        max_event_bytes: one event of a stream (a server-sent event, or an NDJSON line; so also its longest line); a
            stream as a whole is bounded by the call's deadline, not by size.
    """

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def __post_init__(self) -> None:
        for name in ("max_response_bytes", "max_event_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise LLMConfigError(f"{name} must be a positive number of bytes, got {value!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ResponseLimits:
        """The limits a backend's `LLMConfig.extra_params` sets (`max_response_bytes`, `max_event_bytes`), else the
        defaults."""
        return cls(**{name: settings[name] for name in ("max_response_bytes", "max_event_bytes") if name in settings})


def sdk_http_client(sdk: ModuleType, transport: str, timeout: Any, limits: ResponseLimits) -> Any:
    """The `http_client` for an `openai` / `anthropic` async client: the SDK's aiohttp or httpx2 client class (which
    carry the SDK's defaults, e.g. following redirects) with `client_options`."""
    factory = sdk.DefaultAioHttpClient if resolve_transport(transport) == "aiohttp" else sdk.DefaultAsyncHttpxClient
    return factory(timeout=timeout, **client_options("httpx2", limits, asks_for_stream))


def client_options(http: str, limits: ResponseLimits, streamed: StreamedRequest) -> dict[str, Any]:
    """The keyword arguments every backend's `AsyncClient` of `http` ("httpx" or "httpx2") is built with: a pool sized
    for high concurrency, only the encodings `LimitedStream` decodes, every response held to `limits` (per event for
    a request `streamed` says asked for a stream, else as a whole), and the network rule of `network_options`."""
    return {"limits": pool_limits(http), "headers": {"Accept-Encoding": ACCEPT_ENCODING},
            "event_hooks": {"response": [LimitResponse(limits, http, streamed)]}, **network_options()}


def pool_limits(http: str = "httpx2") -> Any:
    """The `Limits` of one backend's pool: `MAX_CONNECTIONS`, every one of them kept alive."""
    module = importlib.import_module(http)
    return module.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS,
                         keepalive_expiry=KEEPALIVE_EXPIRY)


#: `"stream": true` in a JSON body, with or without spaces (httpx before 0.28 writes `json=` bodies with them).
_STREAM_KEY = re.compile(rb'"stream"\s*:\s*true')


def asks_for_stream(request: Any) -> bool:
    """Whether a JSON request body holds `"stream": true` (how the OpenAI, Anthropic and Ollama APIs ask for a
    stream). Inside a JSON string the quotes would be escaped, so only a key matches."""
    return _STREAM_KEY.search(request.content) is not None


# -- size limits ------------------------------------------------------------------------------------------------------


class LimitResponse:
    """httpx / httpx2 response hook (run before the body is read): the body is decoded and bounded by `LimitedStream`,
    per event when the request asked for a stream and the content type is a streamed one (`FRAMINGS`), else as a
    whole, whatever the content type claims.

    The `Content-Encoding` header is removed once `LimitedStream` takes over the decoding, so httpx does not decode
    twice; an encoding it cannot decode is refused before any byte is read.
    """

    __slots__ = ("limits", "stream_class", "streamed")

    def __init__(self, limits: ResponseLimits, http: str, streamed: StreamedRequest) -> None:
        self.limits = limits
        self.stream_class = limited_stream_class(http)
        self.streamed = streamed

    async def __call__(self, response: Any) -> None:
        headers = response.headers
        encoding = headers.get("content-encoding")
        if encoding is not None:
            del headers["content-encoding"]
            encoding = encoding.strip().lower()
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        framing = FRAMINGS.get(content_type)
        if framing is not None and not self.streamed(response.request):
            framing = None
        response.stream = self.stream_class(response.stream, encoding or "", self.limits, framing=framing)


@functools.cache
def limited_stream_class(http: str) -> type[LimitedStream]:
    """`LimitedStream` as the `AsyncByteStream` of `http` ("httpx" or "httpx2") that it requires of an async body
    (made on first use, so that importing this module loads no HTTP library)."""
    module = importlib.import_module(http)
    return type("LimitedStream", (LimitedStream, module.AsyncByteStream),
                {"__slots__": (), "decoding_error": module.DecodingError})


class LimitedStream:
    """A raw body, decoded (identity, gzip, deflate) in pieces of at most `DECODE_PIECE` bytes, each piece checked
    against the limits before it is passed on, in one linear pass: a whole body that inflates past
    `max_response_bytes`, or a server-sent event (the lines up to a blank line) longer than `max_event_bytes` or
    `MAX_EVENT_LINES` lines, or an NDJSON line longer than `max_event_bytes`, raises `ResponseTooLarge`. A stream's
    unfinished lines are handed on in large pieces (`LineHolder`). Used through `limited_stream_class()`."""

    __slots__ = ("_decompressor", "_events", "_holder", "_inner", "_limit", "_total")
    #: The HTTP library's `DecodingError`, for a body that cannot be decoded (set by `limited_stream_class`).
    decoding_error: type[Exception] = ValueError

    def __init__(self, inner: Any, encoding: str, limits: ResponseLimits, *,
                 framing: Literal["event", "line"] | None) -> None:
        self._inner = inner
        if encoding in ("", "identity"):
            self._decompressor = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, detected
        else:
            raise self.decoding_error(f"unsupported content-encoding {encoding!r} (asked for {ACCEPT_ENCODING})")
        bounds = {"event": EventBounds, "line": LineBounds, None: None}[framing]
        self._events: EventBounds | LineBounds | None = None if bounds is None else bounds(limits.max_event_bytes)
        self._holder = None if bounds is None else LineHolder()
        self._limit = limits.max_response_bytes
        self._total = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        holder = self._holder
        if self._decompressor is None and holder is None:  # the common case, kept short: one check per chunk
            async for chunk in self._inner:
                self._check(chunk)
                yield chunk
            return
        async for chunk in self._inner:
            for piece in (chunk,) if self._decompressor is None else self._decode(chunk):
                self._check(piece)
                if holder is not None:
                    piece = holder.pass_on(piece)
                if piece:
                    yield piece
        rest = b"" if self._decompressor is None else self._flush()
        self._check(rest)
        if holder is not None:
            rest = holder.release() + rest  # what was held came first
        if rest:
            yield rest

    def _check(self, piece: bytes) -> None:
        if self._events is not None:
            self._events.feed(piece)
            return
        self._total += len(piece)
        if self._total > self._limit:
            raise ResponseTooLarge(f"the response body passed max_response_bytes ({self._limit} bytes decoded)")

    def _decode(self, chunk: bytes) -> Iterator[bytes]:
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            piece = decompressor.decompress(chunk, DECODE_PIECE)
            while piece:
                yield piece
                piece = decompressor.decompress(decompressor.unconsumed_tail, DECODE_PIECE)
        except zlib.error as exc:
            raise self.decoding_error(f"the response body is not valid gzip/deflate: {exc}") from exc

    def _flush(self) -> bytes:
        assert self._decompressor is not None
        try:
            return self._decompressor.flush()
        except zlib.error:
            return b""

    async def aclose(self) -> None:
        await self._inner.aclose()


def response_too_large(exc: BaseException) -> ResponseTooLarge | None:
    """The `ResponseTooLarge` in `exc`'s chain (the SDKs may wrap it), or None."""
    for current in exception_chain(exc, as_printed=True):
        if isinstance(current, ResponseTooLarge):
            return current
    return None


# -- transport errors -------------------------------------------------------------------------------------------------


def transport_failure(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """What an SDK exception really was when an aiohttp or OS-level error lies underneath it: "timeout",
    "connection", or None when none does (the SDK's own classification then stands). The SDKs' aiohttp clients map
    aiohttp's exceptions to httpx2's, not always to the right class (OpenAI's turns a dropped connection into a
    connect timeout)."""
    for current in exception_chain(exc, as_printed=True):
        kind = _classify(current)
        if kind is not None:
            return kind
    return None


def _classify(exc: BaseException) -> Literal["timeout", "connection"] | None:
    module = type(exc).__module__
    if module.startswith("aiohttp"):
        return "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection"
    if isinstance(exc, ConnectionError):  # refused, reset, aborted, broken pipe
        return "connection"
    return None
