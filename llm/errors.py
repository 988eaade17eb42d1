"""The exceptions scout-llm raises. Every failure is one of these; no SDK, httpx or json exception escapes.

    LLMError
    ├── LLMConfigError              settings or environment are wrong (missing key, missing SDK)
    ├── LLMValidationError          the request is invalid; also a ValueError; raised before any network call
    ├── LLMBackendError             a backend call failed; carries backend, model, status_code, request_id, ...
    │   ├── LLMAuthenticationError      401 / 403
    │   ├── LLMNotFoundError            404: unknown model or endpoint
    │   ├── LLMBadRequestError          400 / 413 / 422: the vendor rejected the request
    │   │   ├── LLMContextLengthError       the prompt does not fit the model's context window
    │   │   └── LLMContentFilterError       a safety system blocked the prompt or the answer
    │   ├── LLMRateLimitError           429; `retry_after` in seconds when the vendor said so
    │   │   └── LLMQuotaExceededError       quota or spend limit exhausted: waiting does not help
    │   ├── LLMTimeoutError             a connect, first-token, idle or total deadline passed
    │   ├── LLMConnectionError          refused, reset or dropped before an answer began
    │   ├── LLMServerError              5xx, 529 overloaded
    │   └── LLMStreamError              a stream failed after it began; carries `partial_content`
    └── LLMAllBackendsFailedError   every backend tried failed; an ExceptionGroup of their errors

`retryable` says whether the same request may succeed if sent again; the manager is the only code that retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "LLMAllBackendsFailedError",
    "LLMAuthenticationError",
    "LLMBackendError",
    "LLMBadRequestError",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMContentFilterError",
    "LLMContextLengthError",
    "LLMError",
    "LLMNotFoundError",
    "LLMQuotaExceededError",
    "LLMRateLimitError",
    "LLMServerError",
    "LLMStreamError",
    "LLMTimeoutError",
    "LLMValidationError",
]


class LLMError(Exception):
    """Base class of every scout-llm error."""


class LLMConfigError(LLMError):
    """The configuration or the environment is wrong: a missing key, SDK or model file."""


class LLMValidationError(LLMError, ValueError):
    """The request is invalid; raised before any network call. `field` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LLMBackendError(LLMError):
    """A call to a backend failed.

    Attributes:
        backend: the backend's name (`"openai"`, `"claude"`, ...), when known.
        model: the model the call asked for, when known.
        status_code: the HTTP status, when the vendor answered with one.
        request_id: the vendor's request id, when it sent one.
        retry_after: seconds the vendor asked us to wait, when it said so.
        retryable: whether sending the same request again may succeed.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.retryable = self.default_retryable if retryable is None else retryable

    def __str__(self) -> str:
        where = ", ".join(
            f"{name}={value}"
            for name, value in (("backend", self.backend), ("model", self.model), ("status", self.status_code))
            if value is not None
        )
        return f"{self.message} ({where})" if where else self.message


class LLMAuthenticationError(LLMBackendError):
    """The vendor refused the credentials (401) or the permission (403)."""


class LLMNotFoundError(LLMBackendError):
    """The model or endpoint does not exist (404)."""


class LLMBadRequestError(LLMBackendError):
    """The vendor rejected the request as invalid (400, 413, 422)."""


class LLMContextLengthError(LLMBadRequestError):
    """The prompt plus the requested output does not fit the model's context window."""


class LLMContentFilterError(LLMBadRequestError):
    """A safety system blocked the prompt or the answer."""


class LLMRateLimitError(LLMBackendError):
    """Too many requests (429); `retry_after` holds the vendor's hint in seconds."""

    default_retryable = True


class LLMQuotaExceededError(LLMRateLimitError):
    """The account's quota or spend limit is exhausted; retrying soon will not help."""

    default_retryable = False


class LLMTimeoutError(LLMBackendError):
    """A deadline passed: connect, first token, idle gap between chunks, or the whole call."""

    default_retryable = True


class LLMConnectionError(LLMBackendError):
    """The connection was refused, reset or dropped before an answer began."""

    default_retryable = True


class LLMServerError(LLMBackendError):
    """The vendor failed (5xx) or is overloaded (529)."""

    default_retryable = True


class LLMStreamError(LLMBackendError):
    """A stream failed after it had begun; `partial_content` holds the text received before the failure."""

    def __init__(self, message: str, *, partial_content: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)
        self.partial_content = partial_content


class LLMAllBackendsFailedError(ExceptionGroup[LLMError], LLMError):
    """Every backend tried for one call failed; `exceptions` holds each attempt's error, in order."""

    def __new__(cls, message: str, errors: Sequence[LLMError]) -> LLMAllBackendsFailedError:
        return super().__new__(cls, message, list(errors))

    def derive(self, excs: Sequence[LLMError]) -> LLMAllBackendsFailedError:  # type: ignore[override]
        return LLMAllBackendsFailedError(self.message, excs)
