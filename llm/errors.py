"""The exceptions scout-llm raises. Every failure is one of these; no SDK, httpx or json exception escapes.

    LLMError
    ├── LLMConfigError              settings or environment are wrong (missing key, missing SDK)
    ├── LLMValidationError          the request is invalid; also a ValueError; raised before any network call
    ├── LLMBudgetExceededError      the spend budget (SCOUT_LLM_BUDGET_USD) is used up; nothing was sent
    ├── LLMBackendError             a backend call failed; carries backend, model, status_code, request_id, ...
    │   ├── LLMAuthenticationError      401 / 403
    │   ├── LLMNotFoundError            404: unknown model or endpoint
    │   ├── LLMBadRequestError          400 / 413 / 422: the vendor rejected the request
    │   │   ├── LLMContextLengthError       the prompt does not fit the model's context window
    │   │   └── LLMContentFilterError       a safety system blocked the prompt (a filtered answer is not an
    │   │                                   error: it ends with finish_reason "content_filter")
    │   ├── LLMRateLimitError           429; `retry_after` in seconds when the vendor said so
    │   │   ├── LLMQuotaExceededError       quota or spend limit exhausted: waiting does not help
    │   │   └── LLMLocalRateLimitError      our client-side limit (SCOUT_<BACKEND>_RPM/TPM) had no room within the
    │   │                                   call's deadline: no request was sent; never a backend failure
    │   ├── LLMTimeoutError             a connect, first-token, idle or attempt timeout passed
    │   │   └── LLMDeadlineExceededError    the call's total deadline passed; carries every attempt's error
    │   ├── LLMConnectionError          refused, reset or dropped before an answer began
    │   ├── LLMStructuredOutputError    the answer did not match the requested schema, even after one repair
    │   ├── LLMServerError              5xx, 529 overloaded, or an answer of the wrong shape
    │   │   └── LLMCircuitOpenError         the backend's breaker is open: no request was sent (not retryable)
    │   └── LLMStreamError              a stream failed after it began; carries `partial_content`
    └── LLMAllBackendsFailedError   every backend tried failed; an ExceptionGroup of their errors

`retryable` says whether the same request may succeed if sent again; the manager is the only code that retries.
`retry_after` is always a finite number of seconds in [0, `RETRY_AFTER_CEILING`] or None: a vendor's NaN, infinity
or negative wait is dropped, an absurd one capped, when the error is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "LLMAllBackendsFailedError",
    "LLMAuthenticationError",
    "LLMBackendError",
    "LLMBadRequestError",
    "LLMBudgetExceededError",
    "LLMCircuitOpenError",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMContentFilterError",
    "LLMContextLengthError",
    "LLMDeadlineExceededError",
    "LLMError",
    "LLMLocalRateLimitError",
    "LLMNotFoundError",
    "LLMQuotaExceededError",
    "LLMRateLimitError",
    "LLMServerError",
    "LLMStreamError",
    "LLMStructuredOutputError",
    "LLMTimeoutError",
    "LLMValidationError",
]


#: The longest wait an error may carry (one day); a vendor asking for longer is capped here, and the manager caps
#: what it honours much lower (`ManagerPolicy.retry_after_max`, `quota_cooldown_max`).
RETRY_AFTER_CEILING = 86400.0


def sane_retry_after(value: Any) -> float | None:
    """A vendor's wait in seconds, checked: None unless a finite number >= 0; capped at `RETRY_AFTER_CEILING`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):  # compared as an int: a 400-digit integer is finite, and absurd
        return float(min(value, RETRY_AFTER_CEILING)) if value >= 0 else None
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, RETRY_AFTER_CEILING)


class LLMError(Exception):
    """Base class of every scout-llm error."""


class LLMConfigError(LLMError):
    """The configuration or the environment is wrong: a missing key, SDK or model file."""


class LLMValidationError(LLMError, ValueError):
    """The request is invalid; raised before any network call. `field` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LLMBudgetExceededError(LLMError):
    """The spend budget (`SCOUT_LLM_BUDGET_USD`) is used up; the call was not sent. `budget_usd` and `spent_usd` say
    by how much."""

    def __init__(self, message: str, *, budget_usd: float, spent_usd: float) -> None:
        super().__init__(message)
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd


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

    @property
    def retry_after(self) -> float | None:
        """Seconds the vendor asked us to wait, checked (see `sane_retry_after`); None when it did not say."""
        return self._retry_after

    @retry_after.setter
    def retry_after(self, value: Any) -> None:
        self._retry_after = sane_retry_after(value)

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
    """A safety system blocked the prompt. (A filtered or refused answer is a response whose finish_reason is
    "content_filter".)"""


class LLMRateLimitError(LLMBackendError):
    """Too many requests (429); `retry_after` holds the vendor's hint in seconds."""

    default_retryable = True


class LLMQuotaExceededError(LLMRateLimitError):
    """The account's quota or spend limit is exhausted; retrying soon will not help."""

    default_retryable = False


class LLMLocalRateLimitError(LLMRateLimitError):
    """The client-side limiter had no capacity within the call's deadline, so no request was sent.

    `retry_after` says when capacity frees up. Not retryable in the same call (it already waited all it could) and not
    a backend failure: it never counts against the breaker; the manager may fail over.
    """

    default_retryable = False


class LLMTimeoutError(LLMBackendError):
    """A deadline passed: connect, first token, idle gap between chunks, or the whole call."""

    default_retryable = True


class LLMDeadlineExceededError(LLMTimeoutError):
    """The call's total deadline passed, or would pass before the next attempt could start.

    Attributes:
        errors: the error that ended each backend's turn, in order.
        attempts: the attempt trail (dicts with backend, model, outcome, elapsed), as in `metadata["attempts"]`.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[BaseException] = (),
        attempts: Sequence[dict[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.errors = list(errors)
        self.attempts = list(attempts)


class LLMConnectionError(LLMBackendError):
    """The connection was refused, reset or dropped before an answer began."""

    default_retryable = True


class LLMStructuredOutputError(LLMBackendError):
    """The answer was not valid for the requested `response_format`, and neither was the one repair asked for.

    Not retryable, and the manager does not fail over on it unless `ManagerPolicy.structured_failover` says so.

    Attributes:
        raw_text: the model's last answer, as it came.
        errors: what was wrong with it: one short line per problem (JSON syntax or schema validation).
        responses: the answers the vendor billed (`LLMResponse`s: the first answer and its repair), each with its own
            `usage`; the manager records each in its ledger and budget.
    """

    def __init__(self, message: str, *, raw_text: str = "", errors: Sequence[str] = (),
                 responses: Sequence[Any] = (), **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.errors = list(errors)
        self.responses = tuple(responses)


class LLMServerError(LLMBackendError):
    """The vendor failed (5xx) or is overloaded (529)."""

    default_retryable = True


class LLMCircuitOpenError(LLMServerError):
    """The backend's circuit breaker is open, so no request was sent; `retry_after` says when a probe is allowed.

    Not retryable: sending again before `retry_after` is refused the same way (the manager moves on to the next
    backend instead).
    """

    default_retryable = False


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
