"""The HTTP transport under the OpenAI and Anthropic SDK clients, and the transport errors it can raise.

Both SDKs speak HTTP through `httpx2` by default; each also ships an aiohttp transport (`openai.DefaultAioHttpClient`,
`anthropic.DefaultAioHttpClient`, enabled by the `aiohttp` extra of each SDK). A backend uses it whenever aiohttp is
installed (`pip install 'scout-llm[fast]'`), unless told otherwise (`http_transport="httpx"`), and then sends its
generations straight on that transport's aiohttp session with the headers the SDK builds (`llm.backends._wire`): CPU
per call, which is what bounds throughput under concurrency, drops to a fraction of the SDK's
(bench/results/results.md).

One pooled client per backend: its pool holds up to `MAX_CONNECTIONS` connections and keeps every one of them alive
between calls. (The SDKs' default pool keeps only 100 idle connections, so a burst of 256 concurrent calls would close
and reopen 156 connections each time.)

The aiohttp transport maps aiohttp's exceptions to httpx2's, but not always to the right class (OpenAI's copy turns a
dropped connection into a connect *timeout*), and lets the ones it does not know escape as they are;
`transport_failure` finds the aiohttp or OS error underneath so the adapters can classify it themselves.
"""

from __future__ import annotations

import asyncio
import importlib.util
from types import ModuleType
from typing import Any, Literal, TypeAlias

from llm.errors import LLMConfigError

__all__ = [
    "MAX_CONNECTIONS", "HttpTransport", "aiohttp_installed", "pool_limits", "sdk_http_client", "transport_failure",
]

HttpTransport: TypeAlias = Literal["auto", "aiohttp", "httpx"]
#: The transports a backend accepts: "auto" is aiohttp when installed, else the SDK's httpx2.
HTTP_TRANSPORTS: frozenset[str] = frozenset({"auto", "aiohttp", "httpx"})

#: Connections one backend's client may hold open (1,000 concurrent streams fit); all of them are kept alive.
MAX_CONNECTIONS = 1000
#: How long an idle pooled connection stays open (seconds); the httpx2 and aiohttp default.
KEEPALIVE_EXPIRY = 5.0


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


def sdk_http_client(sdk: ModuleType, transport: str, timeout: Any) -> Any:
    """The `http_client` for an `openai` / `anthropic` async client: the SDK's aiohttp or httpx2 client class (which
    carry the SDK's defaults, e.g. following redirects), with a pool sized for high concurrency."""
    factory = sdk.DefaultAioHttpClient if resolve_transport(transport) == "aiohttp" else sdk.DefaultAsyncHttpxClient
    return factory(limits=pool_limits(), timeout=timeout)


def pool_limits() -> Any:
    """The `httpx2.Limits` of one backend's pool: `MAX_CONNECTIONS`, every one of them kept alive."""
    import httpx2

    return httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS,
                         keepalive_expiry=KEEPALIVE_EXPIRY)


def transport_failure(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """What an SDK exception really was when an aiohttp or OS-level error lies underneath it: "timeout",
    "connection", or None when none does (the SDK's own classification then stands)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _classify(current)
        if kind is not None:
            return kind
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def _classify(exc: BaseException) -> Literal["timeout", "connection"] | None:
    module = type(exc).__module__
    if module.startswith("aiohttp"):
        return "timeout" if isinstance(exc, asyncio.TimeoutError) else "connection"
    if isinstance(exc, ConnectionError):  # refused, reset, aborted, broken pipe
        return "connection"
    return None

