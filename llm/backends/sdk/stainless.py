"""The base of the adapters on the Stainless-generated SDKs (`openai`, `anthropic`): one client, one documented call.

Generations go through the SDK's documented generic call, `client.post(path, content=..., cast_to=..., stream=...,
stream_cls=..., options=...)`: the SDK's request pipeline, transport, error statuses and stream decoding, without its
typed parameter transform and response models, whose CPU cost per call exceeds the HTTP exchange's. `raw_response`
still holds the SDK's typed object, built when first read (`llm.base.DeferredRaw`). The client takes its key, base
URL and headers from our settings only, never from the SDK's environment variables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import import_module
from typing import Any, ClassVar

from llm.backends.sdk.adapter import SDKBackend
from llm.backends.sdk.conventions import CONNECT_TIMEOUT, require_sdk
from llm.backends.sdk.transport import HttpTransport, ResponseLimits, resolve_transport, sdk_http_client
from llm.base import LLMConfig
from llm.errors import LLMServerError, LLMValidationError

__all__ = ["StainlessBackend", "encode_body", "request_headers"]

#: Request body keys -> the `LLMRequest` field they come from, to name it when its value cannot be sent.
BODY_FIELDS = {"messages": "messages", "system": "system_prompt", "tools": "tools", "tool_choice": "tool_choice"}
#: The key of `_request_params` output that holds per-request headers (never sent in the body).
HEADERS_KEY = "__headers__"


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


def request_headers(effective: Mapping[str, Any]) -> dict[str, str] | None:
    """`extra_params["extra_headers"]` (from the backend's config or the request), checked: sent with the call
    through the SDK's per-request `options={"headers": ...}`."""
    headers = effective.get("extra_headers")
    if headers is None:
        return None
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in headers.items()):
        raise LLMValidationError("extra_params.extra_headers: must be a dict of strings",
                                 field="extra_params.extra_headers")
    return dict(headers)


class StainlessBackend(SDKBackend):
    """An `SDKBackend` on `openai` or `anthropic`: the client (SDK retries off, explicit timeouts, key and base URL
    from our settings, the chosen transport with size limits) and the generic call.

    A subclass declares its SDK (`sdk_module`, `sdk_client`), the generation endpoint (`generate_path`) and the
    vendor's base URL; its `_request_params` returns the JSON body, plus per-request headers under `HEADERS_KEY`.

    Args:
        config: how to reach the API; `extra_params` may set `max_response_bytes` / `max_event_bytes`
            (`llm.backends.sdk.transport.ResponseLimits`) and `extra_headers`.
        http_transport: "auto" (the SDK's aiohttp client when aiohttp is installed, else httpx2), "aiohttp" or
            "httpx"; see `llm.backends.sdk.transport`.
        limits: response size limits; default from `config.extra_params`, else `ResponseLimits()`.
    """

    #: The SDK's import name, which is also its scout-llm extra.
    sdk_module: ClassVar[str]
    #: The SDK's async client class, e.g. "AsyncOpenAI".
    sdk_client: ClassVar[str]
    #: The generation endpoint, relative to the client's base URL.
    generate_path: ClassVar[str]
    #: The vendor's API root, used when none is configured (so the SDK never reads its own `*_BASE_URL` variable).
    default_base_url: ClassVar[str]
    #: Headers the SDK fills from its own environment variables when given nothing: removed with the SDK's public
    #: `omit`, since a header from the environment would go to whatever base URL is configured (`extra_headers`
    #: still sends one on purpose).
    environment_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: LLMConfig, *, http_transport: HttpTransport = "auto",
                 limits: ResponseLimits | None = None) -> None:
        require_sdk(self.sdk_module, self.sdk_module, self.display_name)
        resolve_transport(http_transport)  # an impossible choice fails here, not at the first call
        super().__init__(config)
        self.http_transport: HttpTransport = http_transport
        if limits is not None:
            self.limits = limits

    def _create_client(self) -> Any:
        sdk = import_module(self.sdk_module)
        seconds = float(self.config.timeout)
        timeout = sdk.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT))
        return getattr(sdk, self.sdk_client)(
            api_key=self.config.secret() or "",
            base_url=self.config.base_url or self.default_base_url,
            timeout=timeout,
            max_retries=0,  # the manager is the one retry owner
            default_headers=dict.fromkeys(self.environment_headers, sdk.omit),
            http_client=sdk_http_client(sdk, self.http_transport, timeout, self.limits),
        )

    @staticmethod
    def _call(params: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        headers = params.pop(HEADERS_KEY, None)
        return encode_body(params), {"headers": headers} if headers else {}

    async def _send(self, params: dict[str, Any]) -> Any:
        """POST the body; the answer's JSON and headers. Read as a stream so that an event stream sent in place of
        JSON is refused unread (it is bounded per event, not as a whole)."""
        content, options = self._call(params)
        response = await self._client.post(self.generate_path, content=content, cast_to=_raw_response(),
                                           stream=True, options=options)
        try:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                raise LLMServerError("malformed response from the vendor: an event stream answered a call for JSON")
            body = await response.aread()  # closes the response once read
        except BaseException:
            await response.aclose()
            raise
        return json.loads(body), response.headers

    async def _open_stream(self, params: dict[str, Any]) -> Any:
        """POST the body for a stream: the SDK's `AsyncStream` of the events' JSON (its `close()` ends it)."""
        content, options = self._call(params)
        return await self._client.post(self.generate_path, content=content, cast_to=object, stream=True,
                                       stream_cls=_event_stream_class(self.sdk_module), options=options)


@functools.cache
def _raw_response() -> type[Any]:
    """`httpx2.Response`: the `cast_to` that hands back the HTTP response as it is (looked up once, not per call)."""
    import httpx2

    return httpx2.Response


@functools.cache
def _event_stream_class(sdk_module: str) -> Any:
    """The SDK's `AsyncStream[object]`: its SSE decoder yielding each event's JSON (built once per SDK)."""
    return import_module(sdk_module).AsyncStream[object]
