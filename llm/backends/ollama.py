"""Ollama adapter, on the official `ollama` async client, through `/api/chat` (never `/api/generate`).

API reference: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
Errors (the `{"error": "..."}` envelope, and errors as an NDJSON line once a stream began):
https://docs.ollama.com/api/errors
What Ollama lacks (`tool_choice`, tool-call ids, image URLs, `user`) is handled where it is translated, below.
The client's `httpx.AsyncClient` is built from `llm.backends.sdk.transport.client_options` (size limits, the network
rule) through `ollama.AsyncClient(**httpx_kwargs)`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Generator, Iterable, Mapping
from typing import Any, ClassVar

from llm.accounting.usage import ollama_usage
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.adapter import SDKBackend
from llm.backends.sdk.conventions import CONNECT_TIMEOUT, normalise_finish_reason, quoted, refuse_params, require_sdk
from llm.backends.sdk.error_map import error_for_status
from llm.backends.sdk.transport import asks_for_stream, client_options
from llm.base import FinishReason, LLMConfig, LLMRequest, LLMResponse, StreamEvent, TextDelta, ToolCallDelta
from llm.core.chains import exception_chain
from llm.errors import (
    LLMBackendError,
    LLMConnectionError,
    LLMError,
    LLMServerError,
    LLMTimeoutError,
    LLMValidationError,
)

__all__ = ["OllamaBackend"]

FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

#: Our sampling settings -> Ollama `options` names (https://github.com/ollama/ollama/blob/main/docs/modelfile.md).
OPTION_NAMES = {
    "temperature": "temperature",
    "max_tokens": "num_predict",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop": "stop",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}

#: Extras request validation accepts that Ollama has no equivalent for (`refuse_params`).
NO_EQUIVALENT_PARAMS = ("user",)

#: The timing counters of the final chunk kept in `LLMResponse.metadata` (nanoseconds).
METADATA_FIELDS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")

#: What the client's `Tool` model keeps of a tool's JSON schema; anything else is dropped before it is sent, and a
#: warning names it (https://github.com/ollama/ollama-python/issues/429, /issues/724).
SDK_PARAMETER_KEYS = frozenset({"type", "$defs", "items", "required", "properties"})
SDK_PROPERTY_KEYS = frozenset({"type", "items", "description", "enum"})
HARMLESS_SCHEMA_KEYS = frozenset({"title", "$schema"})


def map_finish_reason(done_reason: str | None) -> FinishReason:
    """Ollama's `done_reason` -> ours. `load`/`unload` (no generation) and absent reasons count as `stop`."""
    return normalise_finish_reason(FINISH_REASONS, done_reason) or "stop"


def to_ollama_messages(messages: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
    """OpenAI-format messages -> Ollama's; `system_prompt` first. System messages stay where they are. Ollama has no
    tool-call ids: a `role: "tool"` result goes back with the `tool_name` of the call its `tool_call_id` names.

    Raises:
        LLMValidationError: for what Ollama cannot take (http image URLs, tool arguments that are not a JSON object).
    """
    tool_names = {
        call["id"]: call["function"]["name"]
        for message in messages
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
    }
    converted = [_to_ollama_message(message, f"messages[{i}]", tool_names) for i, message in enumerate(messages)]
    if system_prompt:
        converted.insert(0, {"role": "system", "content": system_prompt})
    return converted


def _to_ollama_message(message: Mapping[str, Any], where: str, tool_names: Mapping[str, str]) -> dict[str, Any]:
    role = message["role"]
    text, images = _split_content(message.get("content"), f"{where}.content")
    converted: dict[str, Any] = {"role": role, "content": text}
    if images:
        converted["images"] = images
    calls = message.get("tool_calls") or []
    if calls:
        converted["tool_calls"] = [_to_ollama_tool_call(call, f"{where}.tool_calls[{j}]")
                                   for j, call in enumerate(calls)]
    if role == "tool":
        name = tool_names.get(message.get("tool_call_id", "")) or message.get("name")
        if name:
            converted["tool_name"] = name
    return converted


def _split_content(content: Any, where: str) -> tuple[str, list[str]]:
    """Message content -> (text, base64 images): text parts joined by newlines, image parts as base64 payloads."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            images.append(_image_payload(part["image_url"]["url"], f"{where}[{j}].image_url"))
    return "\n".join(texts), images


def _image_payload(url: str, where: str) -> str:
    """A `data:` URL -> its base64 payload (Ollama's `images`); Ollama takes no image URLs."""
    header, comma, payload = url.partition(",")
    if not url.startswith("data:") or not comma or not header.endswith(";base64"):
        raise LLMValidationError(
            f"{where}: Ollama takes images inline only; send a data:<mime>;base64,... URL "
            f"(http(s) image URLs are not supported)",
            field=where,
        )
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise LLMValidationError(f"{where}: the data: URL does not hold valid base64", field=where) from None
    return payload


def _to_ollama_tool_call(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI-format tool call -> Ollama's: no id, `arguments` as a JSON object rather than JSON text."""
    function = call["function"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            arguments = None
    elif arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        field = f"{where}.function.arguments"
        raise LLMValidationError(f"{field}: Ollama needs the arguments as a JSON object", field=field)
    return {"function": {"name": function["name"], "arguments": dict(arguments)}}


def to_ollama_tools(
    tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """The tools to send for a `tool_choice`, which Ollama lacks: "none" sends no tools, a named function only that
    tool; "required"/"any" send them all, though the model may still answer in text."""
    if not tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, Mapping):
        name = tool_choice["function"]["name"]
        chosen = [tool for tool in tools if tool["function"]["name"] == name]
        if not chosen:
            raise LLMValidationError(f"tool_choice: no tool named {name!r} in tools", field="tool_choice")
        return chosen
    return list(tools)


def schema_keys_dropped_by_sdk(tool: Mapping[str, Any]) -> list[str]:
    """The parts of a tool's parameter schema the `ollama` client's `Tool` model will drop, as dotted names."""
    parameters = tool.get("function", {}).get("parameters") or {}
    dropped = [key for key in parameters if key not in SDK_PARAMETER_KEYS | HARMLESS_SCHEMA_KEYS]
    for name, prop in (parameters.get("properties") or {}).items():
        dropped += [f"{name}.{key}" for key in prop if key not in SDK_PROPERTY_KEYS | HARMLESS_SCHEMA_KEYS]
    return dropped


def to_ollama_options(effective: Mapping[str, Any]) -> dict[str, Any]:
    """Sampling settings -> Ollama `options` (`max_tokens` is `num_predict`; `stop` is always a list)."""
    refuse_params(effective, NO_EQUIVALENT_PARAMS, "Ollama")
    options = {ollama_name: effective[ours] for ours, ollama_name in OPTION_NAMES.items() if ours in effective}
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


def to_ollama_format(response_format: Any) -> str | dict[str, Any] | None:
    """OpenAI `response_format` -> Ollama `format`: `"json"`, a JSON schema, or None for plain text."""
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if response_format is None or kind == "text":
        return None
    if kind == "json_object":
        return "json"
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if isinstance(schema, Mapping):
        return dict(schema)
    raise LLMValidationError(
        "extra_params.response_format: expected {'type': 'text' | 'json_object'} or "
        "{'type': 'json_schema', 'json_schema': {'schema': {...}}}",
        field="extra_params.response_format",
    )


class OllamaBackend(SDKBackend):
    """Chat through `ollama.AsyncClient` on `/api/chat`; one client per backend, explicit timeouts, no retries."""

    display_name: ClassVar[str] = "Ollama"
    key_variable: ClassVar[str | None] = None  # a local Ollama needs no key
    # Ollama itself accepts any value; the common 0-2 range keeps a typo from reaching the sampler.
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)
    stream_end_marker: ClassVar[str] = 'final "done": true line'

    def __init__(self, config: LLMConfig) -> None:
        from llm.config import OLLAMA_DEFAULT_URL  # here: the settings module is not needed to import an adapter

        require_sdk("ollama", "ollama", self.display_name)
        super().__init__(config)
        #: Where the Ollama server is (ScoutAgent contract: `config.base_url` or the local default).
        self.base_url: str = config.base_url or OLLAMA_DEFAULT_URL

    def _create_client(self) -> Any:
        import httpx  # the ollama client is built on httpx (not httpx2)
        import ollama

        timeout = float(self.config.timeout)
        # Explicit timeouts (the client's default waits forever); redirects not followed, so traffic stays on
        # `base_url`; the Authorization header is the configured key's or none (`settings_auth`).
        return ollama.AsyncClient(
            host=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            follow_redirects=False,
            auth=settings_auth(self.config.secret()),
            **client_options("httpx", self.limits, asks_for_stream),
        )

    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        if not model:
            raise LLMValidationError("model: no model configured (set SCOUT_OLLAMA_MODEL)", field="model")
        effective = self._get_effective_config(request)
        params: dict[str, Any] = {
            "model": model,
            "messages": to_ollama_messages(request.messages, request.system_prompt),
            "stream": stream,
            "options": to_ollama_options(effective),
        }
        tools = to_ollama_tools(request.tools, request.tool_choice)
        if tools:
            check_tools_for_client(tools)
            self._warn_dropped_schema(tools)
            params["tools"] = tools
        response_format = to_ollama_format(effective.get("response_format"))
        if response_format is not None:
            params["format"] = response_format
        return params

    def _warn_dropped_schema(self, tools: Iterable[Mapping[str, Any]]) -> None:
        for tool in tools:
            dropped = schema_keys_dropped_by_sdk(tool)
            if dropped:
                self.logger.warning(
                    "the ollama client drops these schema parts of tool %r: %s",
                    tool["function"]["name"], ", ".join(dropped),
                )

    async def _send(self, params: dict[str, Any]) -> Any:
        return await self._client.chat(**params)

    async def _open_stream(self, params: dict[str, Any]) -> Any:
        return await self._client.chat(**params)

    def _convert_response(self, raw: Any, model: str) -> LLMResponse:
        acc = StreamAccumulator(raw.model or model)
        return self._convert_response_events(acc, self._convert_chunk(raw, acc), raw)

    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
        """One `ChatResponse` (a stream line, or the whole answer) -> events; the `done` line carries the totals."""
        if chunk.model:
            acc.model = chunk.model
        message = chunk.message
        events: list[StreamEvent] = []
        if message.content:
            events.append(TextDelta(message.content))
        if message.thinking:
            acc.metadata["thinking"] = acc.metadata.get("thinking", "") + message.thinking
        first = len(acc.tool_parts)  # calls arrive whole, possibly over several lines: number them across the stream
        for offset, call in enumerate(message.tool_calls or []):
            arguments = json.dumps(dict(call.function.arguments or {}), ensure_ascii=False)
            events.append(ToolCallDelta(first + offset, f"call_{first + offset}", call.function.name, arguments))
        if chunk.done:
            acc.finish_reason = map_finish_reason(chunk.done_reason)
            acc.usage = ollama_usage(chunk)
            acc.metadata["done_reason"] = chunk.done_reason
            acc.metadata.update({name: getattr(chunk, name) for name in METADATA_FIELDS})
        return events

    def _translate_error(self, exc: Exception, model: str) -> LLMError:
        return translate_ollama_error(exc, backend=self.name, model=model)

    async def _list_models(self) -> list[str]:
        listing = await self._client.list()
        return [item.model for item in listing.models if item.model]


def settings_auth(key: str | None) -> Any:
    """The `httpx.Auth` of the Ollama client: a bearer token of the configured key, else no Authorization header at
    all. The ollama client puts `OLLAMA_API_KEY` from the environment into its default headers when it is given no
    key; an auth flow runs on each request after those are merged, so the environment's key is never sent."""
    import httpx

    class SettingsAuth(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            if key:
                request.headers["Authorization"] = f"Bearer {key}"
            else:
                request.headers.pop("Authorization", None)
            yield request

    return SettingsAuth()


def check_tools_for_client(tools: list[dict[str, Any]]) -> None:
    """Run the tools through the client's own `Tool` model now, so that a schema it refuses (parameters that are not an
    object, a non-string description, ...) is a validation error naming the field, not a failure inside the call."""
    import ollama
    import pydantic

    for i, tool in enumerate(tools):
        try:
            ollama.Tool.model_validate(tool)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join([f"tools[{i}]", *map(str, error["loc"])])
            raise LLMValidationError(f"{field}: {error['msg']}", field=field) from None


def translate_ollama_error(exc: Exception, *, backend: str, model: str) -> LLMError:
    """An `ollama` client (or transport) exception -> the most specific `LLMError`."""
    import httpx
    import ollama

    if isinstance(exc, ollama.ResponseError):
        return _response_error(exc, backend=backend, model=model)
    if isinstance(exc, httpx.TimeoutException):
        return LLMTimeoutError(f"request timed out: {type(exc).__name__}", backend=backend, model=model)
    # The client turns a refused connection into the builtin ConnectionError; in streams httpx's errors come through.
    if isinstance(exc, ConnectionError | httpx.TransportError):
        return LLMConnectionError(f"connection failed: {exc or type(exc).__name__}", backend=backend, model=model)
    if isinstance(exc, ValueError | httpx.DecodingError):  # a malformed line (json) or answer (pydantic)
        return LLMServerError(f"malformed response from Ollama: {quoted(exc)}", backend=backend, model=model)
    return LLMBackendError(f"{type(exc).__name__}: {quoted(exc)}", backend=backend, model=model)


def _response_error(exc: Any, *, backend: str, model: str) -> LLMBackendError:
    """`ollama.ResponseError`: an HTTP error status, or (status -1) an `{"error": ...}` line inside a stream."""
    import httpx

    status = exc.status_code if exc.status_code > 0 else None
    # The client re-raises HTTPStatusError as ResponseError `from None`: the response (and its Retry-After header)
    # stays reachable in the chain, as the suppressed context.
    http_error = next((e for e in exception_chain(exc) if isinstance(e, httpx.HTTPStatusError)), None)
    headers = http_error.response.headers if http_error is not None else None
    return error_for_status(status, str(exc.error), headers=headers, backend=backend, model=model)
