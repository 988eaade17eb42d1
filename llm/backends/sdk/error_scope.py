"""The one error scope of an adapter call: whatever leaves it is an `LLMError` whose chain carries no key.

It covers preparation, sending, stream iteration and assembly of the answer (`llm.backends.sdk.adapter`); the keys
are scrubbed by `llm.core.secrets`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal, Protocol

from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.transport import response_too_large
from llm.base import LLMConfig
from llm.core.secrets import scrub_exception
from llm.errors import LLMBackendError, LLMError, LLMServerError, LLMStreamError, LLMValidationError

__all__ = ["ErrorScope"]


class ScopedBackend(Protocol):
    """What the scope needs of its backend (an `SDKBackend`)."""

    config: LLMConfig

    @property
    def name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    def _translate_error(self, exc: Exception, model: str) -> LLMError: ...


class ErrorScope:
    """Maps the exception leaving a call to the `LLMError` the caller sees.

    * before the request was prepared (`prepared` False), an exception outside the `llm.errors` tree comes from our
      side -- the caller's input or our translation of it -- and becomes `LLMValidationError` (field "request"): never
      a backend failure, never retried, never counted by the breaker;
    * after that, an answer past its size limits (`llm.backends.sdk.transport.ResponseTooLarge`, however the SDK
      wrapped it) is `LLMServerError("response too large: ...")` on every backend, and the adapter's
      `_translate_error` maps anything else; once a stream began (`acc.started`), any failure becomes
      `LLMStreamError` with the partial text.

    CancelledError, GeneratorExit and KeyboardInterrupt pass through untouched.
    """

    __slots__ = ("acc", "backend", "model", "prepared")

    def __init__(self, backend: ScopedBackend, model: str, acc: StreamAccumulator | None, prepared: bool) -> None:
        self.backend = backend
        self.model = model
        self.acc = acc
        self.prepared = prepared

    def __enter__(self) -> ErrorScope:
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
        too_large = response_too_large(exc)
        if too_large is not None:
            return LLMServerError(f"response too large: {too_large}")
        try:
            return self.backend._translate_error(exc, self.model)
        except Exception as failure:  # noqa: BLE001 - a translator's own bug must not replace the error
            return LLMBackendError(f"{type(exc).__name__} (untranslated: {type(failure).__name__})")
