"""HTTP status plus vendor error code -> the most specific `LLMBackendError`: the one table every adapter shares.

Also `retry_after_seconds` (the wait a response asks for) and `malformed` (an answer that is not the shape its API
documents).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from llm.errors import (
    LLMAuthenticationError,
    LLMBackendError,
    LLMBadRequestError,
    LLMContentFilterError,
    LLMContextLengthError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
    sane_retry_after,
)

#: Error codes (OpenAI `code`/`type`, Anthropic `error.type`, Gemini `status`) that name a specific failure.
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
#: When an error arrives with no HTTP status (inside a stream), the status its code stands for.
CODE_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "rate_limit_exceeded": 429, "api_error": 500,
    "server_error": 500, "overloaded_error": 529, "internal": 500, "unavailable": 503, "resource_exhausted": 429,
    "invalid_argument": 400, "permission_denied": 403, "not_found": 404, "unauthenticated": 401,
    "deadline_exceeded": 504,
}
# Phrases vendors use for an over-long prompt when they send no specific code (Anthropic, Gemini, Ollama).
CONTEXT_LENGTH_PHRASES = (
    "prompt is too long", "context length", "context window", "input token count", "too many tokens",
)


STATUS_CLASSES: dict[int, type[LLMBackendError]] = {
    401: LLMAuthenticationError,
    403: LLMAuthenticationError,
    404: LLMNotFoundError,
    408: LLMTimeoutError,
    429: LLMRateLimitError,
}


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response asks for: `retry-after-ms`, then `retry-after` in seconds or as an HTTP date (a date in
    the past means now); each number checked by `llm.errors.sane_retry_after`, a header it refuses skipped."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = sane_retry_after(float(value) / divisor)
        except ValueError:
            continue
        if seconds is not None:
            return seconds
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is not None and when.tzinfo is not None:
            return sane_retry_after(max(0.0, when.timestamp() - time.time()))
    return None


def error_for_status(
    status: int | None,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    backend: str | None = None,
    model: str | None = None,
    request_id: str | None = None,
) -> LLMBackendError:
    """The most specific error for an HTTP status plus the vendor's error code; the one table all adapters share."""
    retry_after = retry_after_seconds(headers)
    code = (code or "").lower()
    if status is None:
        status = CODE_STATUS.get(code)
    kwargs: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "status_code": status,
        "request_id": request_id,
        "retry_after": retry_after,
    }
    should_retry = (headers or {}).get("x-should-retry")
    if should_retry in ("true", "false"):
        kwargs["retryable"] = should_retry == "true"
    cls = _error_class(status, code, message)
    if status == 409:
        kwargs.setdefault("retryable", True)
    if cls is LLMQuotaExceededError:
        kwargs.pop("retryable", None)  # a quota error is never worth retrying soon, whatever the header says
    return cls(message, **kwargs)


def _error_class(status: int | None, code: str, message: str) -> type[LLMBackendError]:
    by_code = {**dict.fromkeys(QUOTA_CODES, LLMQuotaExceededError),
               **dict.fromkeys(CONTEXT_LENGTH_CODES, LLMContextLengthError),
               **dict.fromkeys(CONTENT_FILTER_CODES, LLMContentFilterError)}
    if code in by_code:
        return by_code[code]
    if status in (400, 413, 422):
        lowered = message.lower()
        is_context = status == 413 or any(phrase in lowered for phrase in CONTEXT_LENGTH_PHRASES)
        return LLMContextLengthError if is_context else LLMBadRequestError
    if status is None or status >= 500:
        return LLMServerError
    return STATUS_CLASSES.get(status, LLMBackendError)


#: What reading a vendor's JSON raises when it is not the shape its API documents (a missing key, a list for an object,
#: text for a number, invalid JSON, 1e309 where an integer belongs, nesting too deep).
MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError, OverflowError, RecursionError)


def malformed(exc: Exception) -> LLMServerError:
    """The error for an answer that is not the shape its API documents."""
    return LLMServerError(f"malformed response from the vendor: {type(exc).__name__}: {exc}")
