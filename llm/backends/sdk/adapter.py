"""The skeleton every vendor adapter shares: `SDKBackend`, which an adapter subclasses to implement only translation
and the SDK call (the abstract hooks at the end of the class).

`SDKBackend` does the rest: validation, timing, usage normalisation, stream assembly, structured output, the error
scope (`llm.backends.sdk.error_scope`), stream closing. Rules every adapter follows, so that vendors behave alike:

* Finish reason: every complete answer names one; an answer or stream without it is incomplete and raises
  (`_check_answer_end`, `_check_stream_end`), never passed off as "stop".
* Content filtering: a blocked *prompt* raises `LLMContentFilterError`; a filtered or refused *answer* is a response
  with `finish_reason == "content_filter"` keeping whatever text arrived (the vendor's own word in `metadata`).
* Usage: a vendor that reports none gives `usage == {}` and `metadata["usage_unknown"] = True`, never zeros.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any, ClassVar

from llm.backends.base import LLMBackend
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.conventions import aclose_quietly
from llm.backends.sdk.error_map import MALFORMED, malformed
from llm.backends.sdk.error_scope import ErrorScope
from llm.backends.sdk.transport import ResponseLimits
from llm.base import LLMConfig, LLMRequest, LLMResponse, ResponseDone, StreamEvent, TextDelta
from llm.core.validation import validate_request
from llm.errors import (
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMServerError,
    LLMStructuredOutputError,
    LLMValidationError,
)
from llm.output.parse import REPAIR_QUOTE_LIMIT, InvalidOutput, parse_output, repair_request
from llm.output.spec import OutputSpec, output_spec, schema_problems


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

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        #: How much one answer may inflate to (`max_response_bytes`, `max_event_bytes` in `config.extra_params`).
        self.limits = ResponseLimits.from_settings(config.extra_params)

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

    def _errors(self, model: str, acc: StreamAccumulator | None = None, *, request: bool = False) -> ErrorScope:
        """The error scope of a call. `request=True` for a generation, whose scope starts unprepared until
        `_prepare()`; other calls (a models listing, loading a model) send nothing of the caller's, so any failure in
        them is the backend's."""
        return ErrorScope(self, model, acc, prepared=not request)

    def _prepare(self, scope: ErrorScope, request: LLMRequest, stream: bool) -> dict[str, Any]:
        """Validate the request and build the SDK call's parameters; sets the scope's model and marks it prepared."""
        validate_request(request, self.temperature_range)
        try:
            self._ensure_client()
        except LLMError:
            raise
        except Exception as exc:
            raise LLMConfigError(f"{self.display_name} client could not be created: {type(exc).__name__}") from exc
        scope.model = self.resolve_model(request)
        if scope.acc is not None:
            scope.acc.model = scope.model
        params = self._request_params(request, scope.model, stream)
        scope.prepared = True
        return params

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
            params = self._prepare(scope, self._native_request(request, spec), stream=False)
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
        """The typed event stream. With a `response_format`, see `_structured_stream`."""
        if getattr(request, "response_format", None) is None:
            return self._stream_once(request, None)  # the plain stream: no extra generator layer per event
        return self._structured_stream(request)

    async def _structured_stream(self, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
        """A structured stream: its events are held back until the answer validates, then relayed, and the final
        `ResponseDone.response.parsed` holds the structured answer. The text relayed is always the text of the answer
        returned: after a repair (`metadata["structured_repair"]`), the repair's, never the invalid answer's before it.
        A structured answer is of use only whole, and held back it is bounded as a whole answer is (the first-event
        bound of a stream, the attempt bound of `generate`)."""
        spec = self._output_spec(request)
        assert spec is not None
        held, done = await self._held_stream(request, spec)
        try:
            done.response.parsed = parse_output(spec, done.response.content)
        except InvalidOutput as invalid:
            first, repair = done.response, self._repair(request, spec, done.response, invalid)
            held, done = await self._held_stream(repair, spec)
            done = ResponseDone(self._parsed_after_repair(spec, first, done.response))
        for event in held:
            yield event
        yield done

    async def _held_stream(self, request: LLMRequest, spec: OutputSpec) -> tuple[list[StreamEvent], ResponseDone]:
        """One whole stream: its events, and its final `ResponseDone`."""
        held: list[StreamEvent] = []
        async with contextlib.aclosing(self._stream_once(request, spec)) as events:
            async for event in events:
                if isinstance(event, ResponseDone):
                    return held, event
                held.append(event)
        raise LLMConnectionError(f"the stream ended before the answer finished (no {self.stream_end_marker})")

    async def _stream_once(self, request: LLMRequest, spec: OutputSpec | None) -> AsyncGenerator[StreamEvent, None]:
        acc = StreamAccumulator(self.config.model_name)
        with self._errors(acc.model, acc, request=True) as scope:
            params = self._prepare(scope, self._native_request(request, spec), stream=True)
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
        """The repaired answer, parsed; or `LLMStructuredOutputError` (carrying both billed answers) when it is still
        invalid."""
        try:
            second.parsed = parse_output(spec, second.content)
        except InvalidOutput as invalid:
            raise LLMStructuredOutputError(
                f"the answer did not match {spec.name} after one repair: {'; '.join(invalid.errors[:3])}"[:500],
                raw_text=second.content[:REPAIR_QUOTE_LIMIT], errors=invalid.errors, responses=(first, second),
                backend=self.name, model=second.model) from None
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
    def _create_client(self) -> Any:
        """The vendor's async SDK client: SDK retries off, explicit timeouts, settings from our config only."""

    @abstractmethod
    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        """Our request -> the SDK call's keyword arguments (or, for `StainlessBackend`, the JSON body)."""

    @abstractmethod
    async def _send(self, params: dict[str, Any]) -> Any:
        """The call for a whole answer."""

    @abstractmethod
    async def _open_stream(self, params: dict[str, Any]) -> Any:
        """The call for a stream: an async iterable of the vendor's chunks."""

    @abstractmethod
    def _convert_response(self, raw: Any, model: str) -> LLMResponse:
        """A whole answer -> `LLMResponse`, through a `StreamAccumulator` as streams are."""

    @abstractmethod
    def _convert_chunk(self, chunk: Any, acc: StreamAccumulator) -> Iterable[StreamEvent]:
        """One stream chunk -> events, updating the accumulator's usage and finish reason."""

    @abstractmethod
    def _translate_error(self, exc: Exception, model: str) -> LLMError:
        """An SDK or transport exception -> the most specific `LLMError`."""

    @abstractmethod
    async def _list_models(self) -> list[str]:
        """The cheap models listing behind `health_check`."""
