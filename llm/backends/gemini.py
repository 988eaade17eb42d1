"""Google Gemini adapter, on the official `google-genai` async SDK (`google.genai.Client(...).aio`).

API reference: https://ai.google.dev/api/generate-content, https://ai.google.dev/api/models#method:-models.list

Transport: google-genai sends async requests through aiohttp if installed (which retries a refused connection once
after 1-10 s unless `retry_options` is set, and has only a total deadline), else httpx2. So the adapter hands the SDK
its own `httpx2.AsyncClient` (`HttpOptions(httpx_async_client=...)`): one transport wherever it runs, no retry (no
`retry_options`, automatic function calling and continuation off), connect capped at `CONNECT_TIMEOUT`, read timeout
`config.timeout`, and the size limits and network rule of every backend (`llm.backends.sdk.transport.client_options`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar
from typing import Any, ClassVar

from llm import errors
from llm.accounting.usage import gemini_usage
from llm.backends.gemini_request import (
    invalid_field,
    to_gemini_contents,
    to_gemini_sampling,
    to_gemini_tool_config,
    to_gemini_tools,
)
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.adapter import SDKBackend
from llm.backends.sdk.conventions import CONNECT_TIMEOUT, aclose_quietly, normalise_finish_reason, quoted, require_sdk
from llm.backends.sdk.error_map import error_for_status
from llm.backends.sdk.transport import client_options
from llm.base import FinishReason, LLMConfig, LLMRequest, LLMResponse, StreamEvent, TextDelta, ToolCallDelta

__all__ = ["GeminiBackend", "map_finish_reason", "translate_gemini_error"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
#: The REST version the adapter speaks (the SDK's own default is "v1", which lags behind on tools and thinking).
API_VERSION = "v1beta"

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop", "MAX_TOKENS": "length",
    **dict.fromkeys(("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                     "IMAGE_PROHIBITED_CONTENT", "MODEL_ARMOR"), "content_filter"),
    **dict.fromkeys(("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"), "error"),
}

#: ErrorInfo reasons of a 400 INVALID_ARGUMENT that really mean "bad credentials".
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
#: QuotaFailure quota ids/metrics naming a daily (or longer) window: waiting seconds or minutes does not help.
LONG_QUOTA_MARKERS = ("perday", "per_day", "permonth", "per_month")
#: Message phrases of an exhausted quota or spend limit (Gemini sends them under the same 429 RESOURCE_EXHAUSTED).
QUOTA_EXHAUSTED_PHRASES = ("limit: 0", "spending cap", "spend cap", "credits are depleted")
_RPC_TYPE = "type.googleapis.com/google.rpc."

_TIMEOUT, _CONNECTION = (errors.LLMTimeoutError, "request timed out"), (errors.LLMConnectionError, "connection failed")
_MALFORMED = (errors.LLMServerError, "malformed response from Gemini")
#: Transport exceptions by class name along the MRO (no HTTP stack is imported to check them): httpx2 (ours), aiohttp
#: and httpx (google-genai's other transports), google-auth and the builtins they let through.
TRANSPORT_ERRORS: dict[str, tuple[type[errors.LLMBackendError], str]] = {
    "TimeoutException": _TIMEOUT,  # httpx, httpx2: connect, read, write, pool
    "ServerTimeoutError": _TIMEOUT,  # aiohttp
    "TimeoutError": _TIMEOUT,
    "TransportError": _CONNECTION,  # httpx, httpx2: connect, read, protocol (a dropped stream)
    "ClientConnectionError": _CONNECTION,  # aiohttp
    "ClientPayloadError": _CONNECTION,  # aiohttp: a body cut short
    "OSError": _CONNECTION,  # ConnectionError and its kin
    "DecodingError": _MALFORMED,  # httpx, httpx2: bad gzip
    "ValueError": _MALFORMED,  # UnknownApiResponseError, json, pydantic: a chunk or body that does not parse
}


async def _cap_connect_timeout(request: Any) -> None:
    """httpx2 request hook: the SDK passes one float per request (connect = read = config.timeout); cap connect."""
    timeout = request.extensions.get("timeout")
    if isinstance(timeout, dict):
        connect = min(timeout.get("connect") or CONNECT_TIMEOUT, CONNECT_TIMEOUT)
        request.extensions["timeout"] = {**timeout, "connect": connect}


#: The response list of the stream whose request is being sent, set only around that one SDK step (`_releasing`): the
#: httpx2 response hook has no other way to tell which stream a response belongs to. When a stream fails inside the SDK
#: (an error or malformed chunk) the SDK leaves its generators suspended and the connection busy until garbage
#: collection; `_releasing` closes the responses its own stream opened.
_SENDING: ContextVar[list[Any] | None] = ContextVar("gemini_stream_sending", default=None)


def _streams(request: Any) -> bool:
    """Whether a request asks for a stream: Gemini streams from its own method,
    https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent"""
    return ":streamGenerateContent" in request.url.path


async def _track_stream_response(response: Any) -> None:
    """httpx2 response hook: hand a streamGenerateContent response to the stream sending it."""
    opened = _SENDING.get()
    if opened is not None and _streams(response.request):
        opened.append(response)


async def _releasing(stream: Any) -> AsyncIterator[Any]:
    """Iterate an SDK stream (its request goes out on the first step); then close it and the HTTP responses it
    opened, however it ended. The response list is this stream's own."""
    opened: list[Any] = []
    try:
        token = _SENDING.set(opened)
        try:
            first = await anext(stream)
        finally:
            _SENDING.reset(token)  # the same step, so the same context: nothing outlives the send
        yield first
        async for chunk in stream:
            yield chunk
    except StopAsyncIteration:  # an empty stream; the base class reports the missing end
        return
    finally:
        await aclose_quietly(stream)
        for response in opened:
            await response.aclose()


class GeminiBackend(SDKBackend):
    """Gemini `generateContent` / `streamGenerateContent` through `google.genai.Client(...).aio`."""

    display_name: ClassVar[str] = "Google Gemini"
    key_variable: ClassVar[str | None] = "SCOUT_GEMINI_API_KEY"
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)
    stream_end_marker: ClassVar[str] = "finishReason"
    #: `responseMimeType: application/json` + `responseJsonSchema`; a recursive schema is refused here, not by a 400.
    #: https://ai.google.dev/gemini-api/docs/structured-output
    schema_rules: ClassVar[frozenset[str]] = frozenset({"no_recursion"})

    def __init__(self, config: LLMConfig) -> None:
        require_sdk("google.genai", "gemini", self.display_name)
        super().__init__(config)
        self._http: Any = None  # the httpx2 client handed to the SDK, which we close

    def _create_client(self) -> Any:
        import httpx2
        from google import genai
        from google.genai import types
        from google.genai.client import DebugConfig

        timeout = float(self.config.timeout)
        options = client_options("httpx2", self.limits, _streams)
        options["event_hooks"] = {"request": [_cap_connect_timeout],
                                  "response": [*options["event_hooks"]["response"], _track_stream_response]}
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
                                        **options)
        http_options = types.HttpOptions(
            base_url=self.config.base_url or DEFAULT_BASE_URL,  # never GOOGLE_GEMINI_BASE_URL from the environment
            api_version=API_VERSION,
            timeout=max(1, round(timeout * 1000)),  # google-genai takes milliseconds
            httpx_async_client=self._http,
        )
        # Explicit values, so GOOGLE_GENAI_USE_VERTEXAI / GOOGLE_GENAI_CLIENT_MODE in the environment change nothing.
        debug = DebugConfig(client_mode=None, replays_directory=None, replay_id=None)
        try:
            return genai.Client(vertexai=False, api_key=self.config.secret(), http_options=http_options,
                                debug_config=debug)
        except ValueError as exc:
            raise errors.LLMConfigError(f"cannot create the {self.display_name} client: {type(exc).__name__}") from exc

    async def cleanup(self) -> None:
        """Close the SDK client and the HTTP connection pool it was given."""
        client, http, self._client, self._http, self._initialized = self._client, self._http, None, None, False
        try:
            if client is not None:
                try:
                    await client.aio.aclose()
                finally:
                    client.close()  # its idle sync httpx2 client
        finally:
            if http is not None:  # the pool, last and always: it holds the sockets
                await http.aclose()

    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        from google.genai import types

        if not model or any(bad in model for bad in ("..", "?", "&")):  # google-genai would raise a bare ValueError
            raise invalid_field("model", f"invalid Gemini model name {model!r}")
        effective = self._get_effective_config(request)
        system, contents = to_gemini_contents(request.messages, request.system_prompt)
        config: dict[str, Any] = {
            "temperature": effective["temperature"],
            "max_output_tokens": effective["max_tokens"],
            **to_gemini_sampling(effective),
            # Both would make the SDK send more requests on its own; the manager is the one retry owner.
            "automatic_function_calling": {"disable": True},
            "automatic_continuation": False,
        }
        if system:
            config["system_instruction"] = system
        if request.tools:
            # As REST JSON in the body: google-genai would send a typed tool's schema as snake_case
            # `parameters_json_schema`, which Google accepts but translating proxies (LiteLLM's) drop.
            config["http_options"] = {"extra_body": {"tools": to_gemini_tools(request.tools)}}
            if request.tool_choice is not None:
                config["tool_config"] = to_gemini_tool_config(request.tool_choice)
        try:
            typed = types.GenerateContentConfig.model_validate(config)
        except ValueError as exc:  # pydantic: an extra_params value of the wrong type
            raise invalid_field("extra_params", f"rejected by google-genai: {exc}") from None
        return {"model": model, "contents": contents, "config": typed}

    async def _send(self, params: dict[str, Any]) -> Any:
        return await self._client.aio.models.generate_content(**params)

    async def _open_stream(self, params: dict[str, Any]) -> Any:
        # The request goes out on the first iteration, inside the base class's error scope.
        return _releasing(await self._client.aio.models.generate_content_stream(**params))

    def _convert_response(self, raw: Any, model: str) -> LLMResponse:
        acc = StreamAccumulator(model)
        events = list(self._convert_chunk(raw, acc))
        if not events and (blocked := self._blocked_error(acc)) is not None:
            raise blocked
        return self._convert_response_events(acc, events, raw)

    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
        if chunk.model_version:
            acc.model = chunk.model_version
        if chunk.usage_metadata is not None:
            acc.usage = gemini_usage(chunk.usage_metadata)
        if chunk.response_id:
            acc.metadata["response_id"] = chunk.response_id
        feedback = chunk.prompt_feedback
        if feedback is not None and feedback.block_reason:
            acc.metadata["block_reason"] = _enum_name(feedback.block_reason)
        if chunk.candidates:
            yield from _candidate_events(chunk.candidates[0], acc)

    def _check_stream_end(self, acc: StreamAccumulator) -> None:
        if not acc.started and (blocked := self._blocked_error(acc)) is not None:
            raise blocked
        super()._check_stream_end(acc)  # Gemini ends every complete answer with a finishReason

    def _blocked_error(self, acc: StreamAccumulator) -> errors.LLMContentFilterError | None:
        """The error for a prompt a safety system blocked (`promptFeedback.blockReason`), else None. A blocked
        answer is not an error: finish_reason "content_filter", as on every vendor (see `llm.backends.sdk.adapter`)."""
        if not acc.metadata.get("block_reason"):
            return None
        where = f"prompt ({acc.metadata['block_reason']})"
        return errors.LLMContentFilterError(f"Gemini blocked the {where}", backend=self.name, model=acc.model)

    def _translate_error(self, exc: Exception, model: str) -> errors.LLMError:
        return translate_gemini_error(exc, backend=self.name, model=model)

    async def _list_models(self) -> list[str]:
        pager = await self._client.aio.models.list(config={"page_size": 1000})  # one page: one request
        return [str(item.name).removeprefix("models/") for item in pager.page if item.name]


# -- responses ----------------------------------------------------------------------------------------------------


def map_finish_reason(reason: str | None) -> FinishReason | None:
    """Gemini `finishReason` -> ours; unknown reasons (OTHER, LANGUAGE, ...) count as "stop"."""
    return normalise_finish_reason(FINISH_REASONS, reason)


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _candidate_events(candidate: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
    if candidate.finish_reason:
        # metadata["finish_reason"] gets the normalised value, as for every backend; Gemini's own word stays here.
        acc.metadata["raw_finish_reason"] = _enum_name(candidate.finish_reason)
        acc.finish_reason = map_finish_reason(acc.metadata["raw_finish_reason"])
    if candidate.safety_ratings:
        acc.metadata["safety_ratings"] = [{"category": _enum_name(r.category), "probability": _enum_name(r.probability),
                                           "blocked": bool(r.blocked)} for r in candidate.safety_ratings]
    index = len(acc.tool_parts)  # calls of earlier chunks keep their indices
    for part in (candidate.content.parts if candidate.content else None) or []:
        if part.function_call is not None:
            yield _tool_call_event(part, index, acc)
            index += 1
        elif part.text and not part.thought:
            yield TextDelta(part.text)


def _tool_call_event(part: Any, index: int, acc: StreamAccumulator) -> ToolCallDelta:
    call = part.function_call
    call_id = call.id or f"call_{index}"  # Gemini API calls usually carry no id
    if part.thought_signature:
        signature = base64.b64encode(part.thought_signature).decode("ascii")
        acc.metadata.setdefault("thought_signatures", {})[call_id] = signature
    return ToolCallDelta(index, call_id, call.name or "", json.dumps(call.args or {}, ensure_ascii=False))


# -- errors -------------------------------------------------------------------------------------------------------


def translate_gemini_error(exc: Exception, *, backend: str, model: str) -> errors.LLMError:
    """A google-genai SDK or transport (httpx2, httpx, aiohttp) exception -> the most specific `LLMError`."""
    from google.genai.errors import APIError

    if isinstance(exc, APIError):
        return _api_error(exc, backend=backend, model=model)
    for cls in type(exc).__mro__:
        mapped = TRANSPORT_ERRORS.get(cls.__name__)
        if mapped is not None:
            error_class, what = mapped
            return error_class(f"{what}: {type(exc).__name__}: {quoted(exc)}", backend=backend, model=model)
    return errors.LLMBackendError(f"{type(exc).__name__}: {quoted(exc)}", backend=backend, model=model)


def _api_error(exc: Any, *, backend: str, model: str) -> errors.LLMBackendError:
    """An HTTP error status, or an error chunk inside a stream, in Google's envelope {"error": {code, status, ...}}."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    message = str(error.get("message") or exc.message or exc)
    headers = _headers(getattr(exc, "response", None))
    mapped = error_for_status(exc.code if isinstance(exc.code, int) else None, message,
                              code=str(error.get("status") or exc.status or ""), headers=headers, backend=backend,
                              model=model, request_id=headers.get("x-request-id"))
    if mapped.retry_after is None:
        mapped.retry_after = _retry_delay(details)
    if {str(d.get("reason")) for d in _details(details, "ErrorInfo")} & AUTH_REASONS:
        return _reclassify(errors.LLMAuthenticationError, mapped)
    if mapped.status_code == 429 and _quota_exhausted(message, details):
        return _reclassify(errors.LLMQuotaExceededError, mapped)
    return mapped


def _headers(response: Any) -> dict[str, str]:  # httpx2, aiohttp and google-genai's own responses have .items()
    return {str(k).lower(): str(v) for k, v in (getattr(response, "headers", None) or {}).items()}


def _details(details: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in details if d.get("@type") == _RPC_TYPE + kind]


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """Seconds from a RetryInfo detail's `retryDelay` (a protobuf Duration in JSON: "30s", "1.5s"), checked by
    `llm.errors.sane_retry_after`."""
    for detail in _details(details, "RetryInfo"):
        try:
            seconds = errors.sane_retry_after(float(str(detail.get("retryDelay")).removesuffix("s")))
        except ValueError:
            continue
        if seconds is not None:
            return seconds
    return None


def _quota_exhausted(message: str, details: list[dict[str, Any]]) -> bool:
    """Whether a 429 RESOURCE_EXHAUSTED is an exhausted quota (not worth retrying soon) rather than a rate limit.

    Gemini sends per-minute limits and exhausted quotas with the same status, message ("You exceeded your current
    quota") and QuotaFailure detail. The rule: a QuotaFailure violation of a daily or monthly quota, or of a quota of
    0 (the model is not on the plan), or a message saying "limit: 0" or that a spend cap / prepaid credit is used up.
    Everything else (per-minute quotas, "Resource exhausted. Please try again later.") is a retryable rate limit.
    """
    for failure in _details(details, "QuotaFailure"):
        for violation in failure.get("violations") or []:
            names = f"{violation.get('quotaId', '')} {violation.get('quotaMetric', '')}".lower()
            if any(marker in names for marker in LONG_QUOTA_MARKERS) or str(violation.get("quotaValue")) == "0":
                return True
    return any(phrase in message.lower() for phrase in QUOTA_EXHAUSTED_PHRASES)


def _reclassify(cls: type[errors.LLMBackendError], error: errors.LLMBackendError) -> errors.LLMBackendError:
    return cls(error.message, backend=error.backend, model=error.model, status_code=error.status_code,
               request_id=error.request_id, retry_after=error.retry_after)
