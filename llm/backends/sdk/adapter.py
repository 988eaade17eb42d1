"""The skeleton every vendor adapter shares.

An adapter subclasses `SDKBackend` and implements only translation and the SDK call:

* `_create_client()`: the vendor's async SDK client, SDK retries off, explicit timeouts;
* `_request_params(request, model, stream)`: our request -> the SDK call's keyword arguments;
* `_send(params)` / `_open_stream(params)`: the call (the SDK's typed call, or for OpenAI and Anthropic its
  documented generic call, `llm.backends.sdk.stainless`);
* `_convert_response(raw, model)`: a whole answer -> `LLMResponse` (via a `StreamAccumulator`, so streaming and
  non-streaming build the response the same way);
* `_convert_chunk(chunk, acc)`: one stream chunk -> events, updating the accumulator's usage and finish reason;
* `_translate_error(exc, model)`: an SDK or transport exception -> the most specific `LLMError`;
* `_list_models()`: the cheap models listing behind `health_check`.

`SDKBackend` does the rest: validation, timing, usage normalisation, stream assembly, one error scope over request
preparation, sending, stream iteration and assembly (a failure after the first chunk becomes `LLMStreamError` with the
partial text; anything odd from preparation is the caller's `LLMValidationError`), an answer of the wrong shape as
`LLMServerError`, keys scrubbed from every error chain, stream closing.

Rules every adapter follows, so that vendors behave alike:

* Finish reason: every complete answer names one; an answer or stream without it is incomplete and raises
  (`_check_answer_end`, `_check_stream_end`), never passed off as "stop".
* Content filtering: a *prompt* a safety system blocks raises `LLMContentFilterError` (OpenAI's 400
  `content_policy_violation`, Gemini's `promptFeedback.blockReason`); a filtered or refused *answer* is a response
  with `finish_reason == "content_filter"` keeping whatever text arrived (OpenAI `finish_reason: content_filter` and
  `message.refusal`, whose text goes to `metadata["refusal"]`; Anthropic `stop_reason: refusal`; Gemini
  `finishReason: SAFETY` and kin, with `metadata["raw_finish_reason"]`).
* Usage: a vendor that reports none gives `usage == {}` and `metadata["usage_unknown"] = True`, never zeros.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Literal

from llm.backends.base import LLMBackend
from llm.backends.sdk.accumulator import StreamAccumulator as StreamAccumulator
from llm.backends.sdk.error_map import (
    CODE_STATUS as CODE_STATUS,
)
from llm.backends.sdk.error_map import (
    CONTENT_FILTER_CODES as CONTENT_FILTER_CODES,
)
from llm.backends.sdk.error_map import (
    CONTEXT_LENGTH_CODES as CONTEXT_LENGTH_CODES,
)
from llm.backends.sdk.error_map import (
    CONTEXT_LENGTH_PHRASES as CONTEXT_LENGTH_PHRASES,
)
from llm.backends.sdk.error_map import (
    MALFORMED as MALFORMED,
)
from llm.backends.sdk.error_map import (
    QUOTA_CODES as QUOTA_CODES,
)
from llm.backends.sdk.error_map import (
    STATUS_CLASSES as STATUS_CLASSES,
)
from llm.backends.sdk.error_map import (
    error_for_status as error_for_status,
)
from llm.backends.sdk.error_map import (
    malformed as malformed,
)
from llm.backends.sdk.error_map import (
    retry_after_seconds as retry_after_seconds,
)
from llm.base import (
    FinishReason,
    LLMRequest,
    LLMResponse,
    ResponseDone,
    StreamEvent,
    TextDelta,
    validate_request,
)
from llm.core.secrets import scrub_exception
from llm.errors import (
    LLMBackendError,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMServerError,
    LLMStreamError,
    LLMStructuredOutputError,
    LLMValidationError,
)
from llm.output.parse import REPAIR_QUOTE_LIMIT, InvalidOutput, parse_output, repair_request
from llm.output.spec import OutputSpec, output_spec, schema_problems

#: Connect timeout cap (seconds): a vendor that does not accept a TCP connection in this long is down.
CONNECT_TIMEOUT = 10.0


def normalise_finish_reason(table: Mapping[str, FinishReason], reason: str | None) -> FinishReason | None:
    """A vendor's finish reason -> ours, through the table its adapter declares (`FINISH_REASONS`): an unknown reason
    is "stop", none at all stays None (the answer has not finished)."""
    return table.get(reason, "stop") if reason else None


def require_sdk(module: str, extra: str, display: str) -> None:
    """Fail with an install hint when a vendor SDK is missing; checks without importing it."""
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise LLMConfigError(
            f"{display} library not available. Install with: pip install 'scout-llm[{extra}]'"
        )


async def aclose_quietly(stream: Any) -> None:
    """Close an SDK stream (async generator or stream object) and its HTTP response."""
    for name in ("aclose", "close"):
        closer = getattr(stream, name, None)
        if closer is not None:
            result = closer()
            if hasattr(result, "__await__"):
                await result
            return



class _ErrorScope:
    """The one error scope of a call: preparation, sending, stream iteration and assembly of the answer.

    Whatever leaves it is an `LLMError` whose chain carries no key (see `llm.core.secrets`):

    * before the request was prepared (`prepared` False), an exception outside the `llm.errors` tree comes from our
      side -- the caller's input or our translation of it -- and becomes `LLMValidationError` (field "request"): never
      a backend failure, never retried, never counted by the breaker;
    * after that, the adapter's `_translate_error` maps it; once a stream began (`acc.started`), any failure becomes
      `LLMStreamError` with the partial text.

    CancelledError, GeneratorExit and KeyboardInterrupt pass through untouched.
    """

    __slots__ = ("acc", "backend", "model", "prepared")

    def __init__(self, backend: SDKBackend, model: str, acc: StreamAccumulator | None, prepared: bool) -> None:
        self.backend = backend
        self.model = model
        self.acc = acc
        self.prepared = prepared

    def __enter__(self) -> _ErrorScope:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            return False
        secret = self.backend.config.secret()
        scrub_exception(exc, secret)
        if isinstance(exc, LLMStreamError):
            return False
        mapped = exc if isinstance(exc, LLMError) else self._map(exc)
        scrub_exception(mapped, secret)
        if isinstance(mapped, LLMBackendError):
            mapped.backend = mapped.backend or self.backend.name
            mapped.model = mapped.model or self.model
        if self.acc is not None and self.acc.started:
            stream_error = LLMStreamError(
                f"stream failed after it began: {getattr(mapped, 'message', str(mapped))}",
                partial_content=self.acc.text,
                backend=self.backend.name,
                model=self.model,
                status_code=getattr(mapped, "status_code", None),
                request_id=getattr(mapped, "request_id", None),
            )
            raise stream_error from exc
        if mapped is exc:
            return False
        raise mapped from exc

    def _map(self, exc: Exception) -> LLMError:
        if not self.prepared:
            return LLMValidationError(
                f"request: {self.backend.display_name} cannot take this request ({type(exc).__name__}: {exc})"[:500],
                field="request",
            )
        try:
            return self.backend._translate_error(exc, self.model)
        except Exception as failure:  # noqa: BLE001 - a translator's own bug must not replace the error
            return LLMBackendError(f"{type(exc).__name__} (untranslated: {type(failure).__name__})")

    def prepare(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        """Validate the request and build the SDK call's parameters; sets `model` and marks the scope prepared."""
        backend = self.backend
        validate_request(request, backend.temperature_range)
        try:
            backend._ensure_client()
        except LLMError:
            raise
        except Exception as exc:
            raise LLMConfigError(f"{backend.display_name} client could not be created: {type(exc).__name__}") from exc
        self.model = backend.resolve_model(request)
        if self.acc is not None:
            self.acc.model = self.model
        params = backend._request_params(request, self.model, stream)
        self.prepared = True
        return params


class SDKBackend(LLMBackend):
    """Base of the four official-SDK adapters; see the module docstring for the hooks."""

    #: Human name for messages, e.g. "OpenAI".
    display_name: ClassVar[str]
    #: The settings variable holding the key, for error hints; None when no key is needed.
    key_variable: ClassVar[str | None] = None
    #: What ends a complete stream, for the "cut short" error message.
    stream_end_marker: ClassVar[str] = "finish reason"
    #: What this vendor's structured output cannot take (`llm.output.spec.SCHEMA_RULES`), refused before any request.
    schema_rules: ClassVar[frozenset[str]] = frozenset()
    #: Whether the vendor has a "any JSON object" mode (`{"type": "json_object"}`) besides JSON schemas.
    takes_json_object: ClassVar[bool] = True

    def _check_ready(self) -> None:
        if self.key_variable is not None and not self.config.secret():
            raise LLMConfigError(f"{self.display_name} API key is required: set {self.key_variable}")

    async def initialize(self) -> bool:
        """Create the SDK client. Makes no network call; `health_check()` probes the vendor."""
        if self._client is None:
            self._check_ready()
            self._client = self._create_client()
        self._initialized = True
        return True

    def _ensure_client(self) -> Any:
        if self._client is None:
            self._check_ready()
            self._client = self._create_client()
            self._initialized = True
        return self._client

    def _errors(self, model: str, acc: StreamAccumulator | None = None, *, request: bool = False) -> _ErrorScope:
        """The error scope of a call. `request=True` for a generation, whose scope starts unprepared until
        `scope.prepare()`; other calls (a models listing, loading a model) send nothing of the caller's, so any
        failure in them is the backend's."""
        return _ErrorScope(self, model, acc, prepared=not request)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        spec = self._output_spec(request)
        response = await self._generate_once(request, spec)
        if spec is None:
            return response
        try:
            response.parsed = parse_output(spec, response.content)
            return response
        except InvalidOutput as invalid:
            repair = self._repair(request, spec, response, invalid)
        second = await self._generate_once(repair, spec)
        return self._parsed_after_repair(spec, response, second)

    async def _generate_once(self, request: LLMRequest, spec: OutputSpec | None) -> LLMResponse:
        with self._errors(self.config.model_name, request=True) as scope:
            params = scope.prepare(self._native_request(request, spec), stream=False)
            start = time.perf_counter()
            raw = await self._send(params)
            try:
                response = self._convert_response(raw, scope.model)
            except LLMError:
                raise
            except MALFORMED as exc:
                raise malformed(exc) from exc
        response.response_time = time.perf_counter() - start
        if self.logger.isEnabledFor(logging.DEBUG):  # its arguments cost more than the disabled call
            self.logger.debug("%s %s answered in %.3fs", self.name, response.model, response.response_time)
        return response

    def stream(self, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
        """The typed event stream. With a `response_format`, the final `ResponseDone.response.parsed` holds the
        structured answer; when the first answer was invalid, the repair's events follow the first answer's, and
        `ResponseDone` carries the repaired answer (`metadata["structured_repair"]` says so)."""
        if getattr(request, "response_format", None) is None:
            return self._stream_once(request, None)  # the plain stream: no extra generator layer per event
        return self._structured_stream(request)

    async def _structured_stream(self, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
        spec = self._output_spec(request)
        assert spec is not None
        async with contextlib.aclosing(self._stream_once(request, spec)) as events:
            async for event in events:
                if not isinstance(event, ResponseDone):
                    yield event
                    continue
                try:
                    event.response.parsed = parse_output(spec, event.response.content)
                except InvalidOutput as invalid:
                    first, repair = event.response, self._repair(request, spec, event.response, invalid)
                    break
                yield event
                return
            else:
                return
        async with contextlib.aclosing(self._stream_once(repair, spec)) as events:
            async for event in events:
                if isinstance(event, ResponseDone):
                    event = ResponseDone(self._parsed_after_repair(spec, first, event.response))
                yield event

    async def _stream_once(self, request: LLMRequest, spec: OutputSpec | None) -> AsyncGenerator[StreamEvent, None]:
        acc = StreamAccumulator(self.config.model_name)
        with self._errors(acc.model, acc, request=True) as scope:
            params = scope.prepare(self._native_request(request, spec), stream=True)
            start = time.perf_counter()
            chunks = await self._open_stream(params)
            try:
                self._stream_opened(chunks, acc)
                async for chunk in chunks:
                    try:
                        for event in self._convert_chunk(chunk, acc):
                            acc.add(event)
                            yield event
                    except LLMError:
                        raise
                    except MALFORMED as exc:
                        raise malformed(exc) from exc
                self._check_stream_end(acc)
            finally:
                await aclose_quietly(chunks)
            done = ResponseDone(acc.to_response(self, time.perf_counter() - start))
        yield done

    # -- structured output (`LLMRequest.response_format`, see llm.output.spec) -----------------------------------------

    def _output_spec(self, request: LLMRequest) -> OutputSpec | None:
        """The request's `OutputSpec`, checked against what this vendor can take; None without `response_format`.

        Raises:
            LLMValidationError: the request is invalid, or the schema is one this vendor cannot take (0 requests).
        """
        if getattr(request, "response_format", None) is None:
            return None
        validate_request(request, self.temperature_range)
        spec = output_spec(request.response_format)
        problems = [] if spec.schema is None else schema_problems(spec.schema, self.schema_rules)
        if spec.schema is None and not self.takes_json_object:
            problems.append("it needs a JSON schema (a pydantic model or a json_schema dict), not json_object")
        problems += self._schema_problems(spec)
        if problems:
            raise LLMValidationError(f"response_format: {self.display_name} cannot take this format: "
                                     f"{'; '.join(problems)}", field="response_format")
        return spec

    def _schema_problems(self, spec: OutputSpec) -> list[str]:
        """What else in the schema this vendor cannot take (beyond `schema_rules`); an adapter may override."""
        return []

    def _native_request(self, request: LLMRequest, spec: OutputSpec | None) -> LLMRequest:
        """The request with `response_format` turned into this vendor's wire form, in `extra_params`, where each
        adapter's translation of an OpenAI-shaped `response_format` picks it up."""
        if spec is None:
            return request
        extra = {**request.extra_params, "response_format": self._wire_format(spec)}
        return dataclasses.replace(request, response_format=None, extra_params=extra)

    def _wire_format(self, spec: OutputSpec) -> dict[str, Any]:
        """The OpenAI-shaped `response_format` this vendor's translation reads (strict for OpenAI itself)."""
        return spec.openai_format(strict=False)

    def _repair(self, request: LLMRequest, spec: OutputSpec, answer: LLMResponse,
                invalid: InvalidOutput) -> LLMRequest:
        self.logger.warning("%s: the answer did not match %s (%s); asking once for a repair", self.name, spec.name,
                            "; ".join(invalid.errors[:3]))
        repair: LLMRequest = repair_request(request, spec, answer.content, invalid.errors)
        return repair

    def _parsed_after_repair(self, spec: OutputSpec, first: LLMResponse, second: LLMResponse) -> LLMResponse:
        """The repaired answer, parsed; or `LLMStructuredOutputError` when it is still invalid."""
        try:
            second.parsed = parse_output(spec, second.content)
        except InvalidOutput as invalid:
            raise LLMStructuredOutputError(
                f"the answer did not match {spec.name} after one repair: {'; '.join(invalid.errors[:3])}"[:500],
                raw_text=second.content[:REPAIR_QUOTE_LIMIT], errors=invalid.errors, backend=self.name,
                model=second.model) from None
        second.metadata["structured_repair"] = True
        if first.usage and second.usage:  # the call cost both answers
            second.usage = {key: first.usage.get(key, 0) + second.usage.get(key, 0) for key in second.usage}
        return second

    async def stream_generate(self, request: LLMRequest) -> AsyncIterator[str]:
        events = self.stream(request)
        try:
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    yield event.text
        finally:
            await events.aclose()

    async def health_check(self) -> bool:
        """List the vendor's models (a free call). Never a billed generation; never raises."""
        try:
            await self.list_models()
        except Exception as exc:  # a probe reports, it does not raise
            return self._probe_failed(exc)
        self.health_error = None
        return True

    async def list_models(self) -> list[str]:
        """The vendor's models list (cached for `get_available_models`)."""
        self._ensure_client()
        with self._errors(self.config.model_name):
            models = await self._list_models()
        self._models = models
        return models

    def get_available_models(self) -> list[str]:
        """Models from the last `list_models()`/`health_check()`; empty (= accept any name) before that."""
        return list(getattr(self, "_models", []))

    def _stream_opened(self, chunks: Any, acc: StreamAccumulator) -> None:
        """Take what the opened stream says before its first chunk (Anthropic: the request id); default nothing."""

    def _check_stream_end(self, acc: StreamAccumulator) -> None:
        """Raise when a stream ended without its vendor's end marker: the answer was cut short.

        Default: the marker is the finish reason (`_check_answer_end` applies the same rule to whole answers); a
        vendor with a separate end event (Anthropic's `message_stop`) overrides this. A stream cut short is a
        connection that ended early: `LLMConnectionError`, retryable before the first chunk.
        """
        if acc.finish_reason is None:
            raise LLMConnectionError(f"the stream ended before the answer finished (no {self.stream_end_marker})")

    def _check_answer_end(self, acc: StreamAccumulator) -> None:
        """Raise when a whole answer names no finish reason. One rule for streams and whole answers: every vendor
        ends a complete answer with one, so an answer without it is incomplete and never passed off as "stop". The
        body arrived whole, so the vendor sent it that way: `LLMServerError`, retryable."""
        if acc.finish_reason is None:
            raise LLMServerError(f"the answer ended without its {self.stream_end_marker}: it may be incomplete")

    def _convert_response_events(
        self, acc: StreamAccumulator, events: Iterable[StreamEvent], raw: Any, response_time: float = 0.0
    ) -> LLMResponse:
        for event in events:
            acc.add(event)
        self._check_answer_end(acc)
        return acc.to_response(self, response_time, raw)

    @abstractmethod
    def _create_client(self) -> Any: ...

    @abstractmethod
    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]: ...

    @abstractmethod
    async def _send(self, params: dict[str, Any]) -> Any: ...

    @abstractmethod
    async def _open_stream(self, params: dict[str, Any]) -> Any: ...

    @abstractmethod
    def _convert_response(self, raw: Any, model: str) -> LLMResponse: ...

    @abstractmethod
    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]: ...

    @abstractmethod
    def _translate_error(self, exc: Exception, model: str) -> LLMError: ...

    @abstractmethod
    async def _list_models(self) -> list[str]: ...
