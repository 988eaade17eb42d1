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
#: Lines in one server-sent event: real ones have two (`event:` and `data:`). The bound also keeps Anthropic's event
#: decoder, which joins an event's lines by repeated concatenation (quadratic in their number), linear.
MAX_EVENT_LINES = 1000
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


class ResponseTooLarge(Exception):
    """A response body or stream event passed its `ResponseLimits`; the adapters report it as `LLMServerError`."""


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


def asks_for_stream(request: Any) -> bool:
    """Whether a JSON request body holds `"stream":true` (how the OpenAI, Anthropic and Ollama APIs ask for a stream;
    our bodies and httpx's JSON are written without spaces). Inside a JSON string the quotes would be escaped, so only
    a key matches."""
    return b'"stream":true' in request.content


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
    `MAX_EVENT_LINES` lines, or an NDJSON line longer than `max_event_bytes`, raises `ResponseTooLarge`. Used through
    `limited_stream_class()`."""

    __slots__ = ("_decompressor", "_events", "_inner", "_limit", "_total")
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
        self._limit = limits.max_response_bytes
        self._total = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._decompressor is None:  # the common case, kept short: one check per chunk
            check = self._check if self._events is None else self._events.feed
            async for chunk in self._inner:
                check(chunk)
                yield chunk
            return
        async for chunk in self._inner:
            for piece in self._decode(chunk):
                self._check(piece)
                yield piece
        rest = self._flush()
        self._check(rest)
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


_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventBounds:
    """Counts the bytes and lines of the current server-sent event across pieces (a blank line ends an event; a line
    ends in CR, LF or CRLF, which may be split between pieces) and raises `ResponseTooLarge` past the bounds."""

    __slots__ = ("event_bytes", "event_lines", "limit", "line", "split_crlf")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = 0  # bytes of the unfinished line
        self.event_bytes = 0
        self.event_lines = 0
        self.split_crlf = False  # the last piece ended in CR: a LF starting the next one belongs to it

    def feed(self, piece: bytes) -> None:
        if (not self.split_crlf and b"\r" not in piece
                and self.event_bytes + self.line + len(piece) <= self.limit
                and self.event_lines + piece.count(b"\n") <= MAX_EVENT_LINES):
            # The common case: LF line ends, and no bound can be passed within this piece.
            if piece.endswith(b"\n\n"):  # it ends an event (a vendor's whole event per piece): nothing is left
                self.line = self.event_bytes = self.event_lines = 0
            else:
                self._feed_within_bounds(piece)
            return
        start = 1 if self.split_crlf and piece[:1] == b"\n" else 0
        for match in _LINE_END.finditer(piece, start):
            length = self.line + match.start() - start
            self.line = 0
            start = match.end()
            if length == 0:
                self.event_bytes = self.event_lines = 0
                continue
            self.event_bytes += length
            self.event_lines += 1
            self._check(0)
        self.split_crlf = piece.endswith(b"\r")
        self.line += len(piece) - start
        self._check(self.line)

    def _feed_within_bounds(self, piece: bytes) -> None:
        """`feed` for a piece with LF line ends only that cannot pass a bound (the caller checked): only the state at
        its end is needed, which depends on the text after the last blank line alone, counted without a loop."""
        blank = piece.rfind(b"\n\n")
        if blank >= 0:  # the last blank line ends an event: the next one starts after it
            piece = piece[blank + 2:]
            self.line = self.event_bytes = self.event_lines = 0
        elif self.line == 0 and piece[:1] == b"\n":  # the only blank line: the previous piece ended a line
            piece = piece[1:]
            self.event_bytes = self.event_lines = 0
        lines = piece.count(b"\n")  # no blank line is left: every line ended here is part of the current event
        if lines:
            last = piece.rfind(b"\n")
            self.event_bytes += self.line + last + 1 - lines
            self.event_lines += lines
            self.line = len(piece) - last - 1
        else:
            self.line += len(piece)

    def _check(self, unfinished: int) -> None:
        if self.event_bytes + unfinished > self.limit:
            raise ResponseTooLarge(f"a stream event passed max_event_bytes ({self.limit} bytes)")
        if self.event_lines > MAX_EVENT_LINES:
            raise ResponseTooLarge(f"a stream event passed {MAX_EVENT_LINES} lines")


class LineBounds:
    """Counts the bytes of the current line of a line-framed stream (NDJSON: one event per LF-ended line) across
    pieces and raises `ResponseTooLarge` past `limit`; a piece is scanned line by line only when a line in it could
    be too long."""

    __slots__ = ("limit", "line")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = 0  # bytes of the unfinished line

    def feed(self, piece: bytes) -> None:
        last = piece.rfind(b"\n")
        if last < 0:
            self.line += len(piece)
        else:
            if self.line + last > self.limit:
                start = 0
                while start <= last:
                    end = piece.index(b"\n", start)
                    self._check(self.line + end - start)
                    self.line, start = 0, end + 1
            self.line = len(piece) - last - 1
        self._check(self.line)

    def _check(self, length: int) -> None:
        if length > self.limit:
            raise ResponseTooLarge(f"a stream line passed max_event_bytes ({self.limit} bytes)")


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
