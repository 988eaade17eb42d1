"""OpenAI adapter, on the official `openai` async SDK (Chat Completions).

API reference: https://platform.openai.com/docs/api-reference/chat/create
Also serves any OpenAI-compatible endpoint through `base_url` (DeepSeek is a thin subclass, see `deepseek.py`).
Requests and answers are the API's JSON, sent through the SDK's generic call (`llm.backends.sdk.stainless`);
`raw_response` is the SDK's `ChatCompletion`, built when first read.

The output limit goes out as `max_completion_tokens` to OpenAI itself (newer models reject `max_tokens`) and as
`max_tokens` to every other endpoint (OpenAI-compatible servers such as llama.cpp, vLLM or LiteLLM's proxy ignore
`max_completion_tokens`); `LLMConfig.extra_params["max_tokens_param"]` overrides the choice per backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlparse

from llm.accounting.usage import openai_usage
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.conventions import normalise_finish_reason
from llm.backends.sdk.error_map import error_for_status
from llm.backends.sdk.stainless import HEADERS_KEY, StainlessBackend, request_headers
from llm.backends.sdk.transport import HttpTransport, ResponseLimits, transport_failure
from llm.base import (
    DeferredRaw,
    FinishReason,
    LLMConfig,
    LLMRequest,
    LLMResponse,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from llm.errors import LLMBackendError, LLMConfigError, LLMConnectionError, LLMError, LLMServerError, LLMTimeoutError
from llm.output.spec import OutputSpec

__all__ = ["OpenAIBackend", "max_tokens_param"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Hosts that are OpenAI's own API (Azure OpenAI included): they take `max_completion_tokens`.
OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

#: `extra_params` keys passed to Chat Completions under the same name.
PASSTHROUGH_PARAMS = ("top_p", "stop", "seed", "frequency_penalty", "presence_penalty", "response_format", "user")


def to_openai_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """Our tool_choice -> OpenAI's: "any" is Anthropic's word for "required"."""
    return "required" if choice == "any" else choice


def map_finish_reason(reason: str | None) -> FinishReason | None:
    return normalise_finish_reason(FINISH_REASONS, reason)


def max_tokens_param(base_url: str | None, setting: Any = None) -> str:
    """The body key of the output limit: `setting` when given, else `max_completion_tokens` for OpenAI's own API
    (no base URL, or an OpenAI / Azure OpenAI host) and `max_tokens` for any other endpoint."""
    if setting is not None:
        if setting not in MAX_TOKENS_PARAMS:
            raise LLMConfigError(f"max_tokens_param must be one of {list(MAX_TOKENS_PARAMS)}, got {setting!r}")
        return str(setting)
    host = (urlparse(base_url).hostname or "") if base_url else OPENAI_HOSTS[0]
    own = host == OPENAI_HOSTS[0] or host.endswith(OPENAI_HOSTS[1])
    return "max_completion_tokens" if own else "max_tokens"


def _refused(acc: StreamAccumulator, text: str) -> None:
    """The model refused (`message.refusal`): the refusal text goes to `metadata["refusal"]` and the answer ends with
    finish_reason "content_filter", as a refusal does on every vendor (Anthropic's `stop_reason: refusal`)."""
    acc.metadata["refusal"] = acc.metadata.get("refusal", "") + str(text)
    acc.finish_reason = "content_filter"


def chat_completion(data: Any) -> Any:
    """The SDK's `ChatCompletion` for an answer's JSON (what `raw_response` holds, built when first read)."""
    from openai.types.chat import ChatCompletion

    return ChatCompletion.construct(**data)


class OpenAIBackend(StainlessBackend):
    """Chat Completions through `openai.AsyncOpenAI`; one pooled client per backend, SDK retries off.

    Takes the arguments of `llm.backends.sdk.stainless.StainlessBackend`; `config.extra_params["max_tokens_param"]`
    ("max_tokens" or "max_completion_tokens") overrides the output-limit key chosen from the base URL.
    """

    display_name: ClassVar[str] = "OpenAI"
    sdk_module: ClassVar[str] = "openai"
    sdk_client: ClassVar[str] = "AsyncOpenAI"
    generate_path: ClassVar[str] = "/chat/completions"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    #: What `openai.AsyncOpenAI` reads from `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` when given nothing.
    environment_headers: ClassVar[tuple[str, ...]] = ("OpenAI-Organization", "OpenAI-Project")
    key_variable: ClassVar[str | None] = "SCOUT_OPENAI_API_KEY"
    stream_end_marker: ClassVar[str] = "finish_reason"
    #: Structured Outputs: the root must be an object; recursion (`$ref: "#"`) is allowed.
    #: https://platform.openai.com/docs/guides/structured-outputs#supported-schemas
    schema_rules: ClassVar[frozenset[str]] = frozenset({"object_root"})

    def __init__(self, config: LLMConfig, *, http_transport: HttpTransport = "auto",
                 limits: ResponseLimits | None = None) -> None:
        super().__init__(config, http_transport=http_transport, limits=limits)
        self.max_tokens_param = max_tokens_param(config.base_url, config.extra_params.get("max_tokens_param"))

    def _wire_format(self, spec: OutputSpec) -> dict[str, Any]:
        """`response_format: {"type": "json_schema", ...}`, the schema made strict-valid unless the caller's
        `json_schema.strict` was False."""
        return spec.openai_format(strict=spec.strict)

    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        effective = self._get_effective_config(request)
        params: dict[str, Any] = {
            "model": model,
            "messages": self._prepare_messages(request),
            "temperature": effective["temperature"],
            self.max_tokens_param: effective["max_tokens"],
        }
        for key in PASSTHROUGH_PARAMS:
            if key in effective:
                params[key] = effective[key]
        if request.tools:
            params["tools"] = request.tools
        if request.tool_choice is not None:
            params["tool_choice"] = to_openai_tool_choice(request.tool_choice)
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        headers = request_headers(effective)
        if headers:
            params[HEADERS_KEY] = headers
        return params

    def _convert_response(self, raw: Any, model: str) -> LLMResponse:
        data, headers = raw
        acc = StreamAccumulator(data.get("model") or model)
        events: list[StreamEvent] = []
        choices = data.get("choices")
        if choices:
            choice = choices[0]
            message = choice.get("message") or {}
            if message.get("content"):
                events.append(TextDelta(message["content"]))
            for index, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function")
                if function is not None:
                    events.append(ToolCallDelta(index, call.get("id"), function.get("name"),
                                                function.get("arguments") or ""))
            acc.finish_reason = map_finish_reason(choice.get("finish_reason"))
            if message.get("refusal"):
                _refused(acc, message["refusal"])
        acc.usage = openai_usage(data.get("usage"))
        acc.metadata.update(system_fingerprint=data.get("system_fingerprint"), request_id=headers.get("x-request-id"))
        return self._convert_response_events(acc, events, DeferredRaw(chat_completion, data))

    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
        model = chunk.get("model")
        if model:
            acc.model = model
        usage = chunk.get("usage")
        if usage is not None:
            acc.usage = openai_usage(usage)
        events: list[StreamEvent] = []  # a list, not a generator: one object less per chunk
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    events.append(TextDelta(content))
                if delta.get("refusal"):
                    _refused(acc, delta["refusal"])
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    events.append(ToolCallDelta(
                        index=call.get("index", 0),
                        id=call.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments") or "",
                    ))
            reason = choice.get("finish_reason")
            if reason:
                acc.finish_reason = "content_filter" if "refusal" in acc.metadata else map_finish_reason(reason)
        return events

    def _translate_error(self, exc: Exception, model: str) -> LLMError:
        return translate_openai_error(exc, backend=self.name, model=model)

    async def _list_models(self) -> list[str]:
        page = await self._client.models.list()
        return [item.id for item in page.data]


def translate_openai_error(exc: Exception, *, backend: str, model: str) -> LLMError:
    """An `openai` SDK (or transport) exception -> the most specific `LLMError`."""
    import httpx2
    import openai

    # What lies underneath decides first: the aiohttp transport reports a dropped connection as a connect timeout.
    failure = None if isinstance(exc, openai.APIStatusError) else transport_failure(exc)
    if failure == "timeout" or (failure is None and isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException)):
        return LLMTimeoutError(f"request timed out: {exc}", backend=backend, model=model)
    if failure == "connection" or isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return LLMConnectionError(f"connection failed: {exc}", backend=backend, model=model)
    if isinstance(exc, openai.APIStatusError | openai.APIError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or exc.message)
        code = str(error.get("code") or error.get("type") or getattr(exc, "code", None) or "")
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        return error_for_status(
            status,
            message,
            code=code,
            headers=response.headers if response is not None else None,
            backend=backend,
            model=model,
            request_id=getattr(exc, "request_id", None),
        )
    if isinstance(exc, ValueError):  # a malformed chunk (json) or response (pydantic)
        return LLMServerError(f"malformed response from the vendor: {exc}", backend=backend, model=model)
    return LLMBackendError(f"{type(exc).__name__}: {exc}", backend=backend, model=model)

