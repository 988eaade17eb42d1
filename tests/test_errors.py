"""The error tree and the shared status table every adapter maps through."""

from __future__ import annotations

import email.utils
import time

import pytest

import llm
import llm.base
import llm.errors
import llm.manager
from llm.backends.sdk.error_map import error_for_status, retry_after_seconds
from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMBackendError,
    LLMBadRequestError,
    LLMContentFilterError,
    LLMContextLengthError,
    LLMError,
    LLMNotFoundError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMServerError,
    LLMStreamError,
    LLMTimeoutError,
    LLMValidationError,
)


def test_every_error_is_exported_and_drawn_in_the_docstring() -> None:
    doc = llm.errors.__doc__ or ""
    for name in llm.errors.__all__:
        cls = getattr(llm.errors, name)
        assert issubclass(cls, LLMError)
        assert name in doc, f"{name} missing from the tree in llm/errors.py"
        assert getattr(llm.base, name) is cls, "callers import errors from llm.base"
        assert getattr(llm, name) is cls


def test_tree_shape() -> None:
    assert issubclass(LLMValidationError, ValueError)
    assert issubclass(LLMContextLengthError, LLMBadRequestError)
    assert issubclass(LLMContentFilterError, LLMBadRequestError)
    assert issubclass(LLMQuotaExceededError, LLMRateLimitError)
    for cls in (LLMAuthenticationError, LLMNotFoundError, LLMRateLimitError, LLMTimeoutError, LLMServerError,
                LLMStreamError):
        assert issubclass(cls, LLMBackendError)


def test_breaker_and_deadline_errors_live_in_the_tree_and_are_not_retryable() -> None:
    """Issue 11 item 3: both were defined in a private module, not exported, and circuit-open said retryable=True."""
    from llm.call.retry import is_retryable

    assert llm.LLMCircuitOpenError is llm.errors.LLMCircuitOpenError is llm.manager.LLMCircuitOpenError
    assert llm.LLMDeadlineExceededError is llm.errors.LLMDeadlineExceededError
    assert issubclass(llm.LLMCircuitOpenError, LLMServerError)
    assert issubclass(llm.LLMDeadlineExceededError, LLMTimeoutError)
    opened = llm.LLMCircuitOpenError("open", backend="openai", retry_after=3.0)
    deadline = llm.LLMDeadlineExceededError("late", errors=[opened], attempts=[{"backend": "openai"}])
    assert not opened.retryable and not is_retryable(opened)
    assert not deadline.retryable and deadline.errors == [opened]
    assert "llm._resilience" not in {cls.__module__ for cls in (type(opened), type(deadline))}


def test_all_backends_failed_is_an_exception_group_and_an_llm_error() -> None:
    errors = [LLMServerError("down", backend="openai", status_code=503), LLMRateLimitError("slow", backend="claude")]
    group = LLMAllBackendsFailedError("all backends failed", errors)
    assert isinstance(group, ExceptionGroup) and isinstance(group, LLMError)
    assert list(group.exceptions) == errors
    with pytest.raises(LLMError):
        raise group
    try:
        raise group
    except* LLMRateLimitError as matched:
        assert isinstance(matched, LLMAllBackendsFailedError)
        assert [type(e) for e in matched.exceptions] == [LLMRateLimitError]
    except* LLMServerError as rest:
        assert [e.status_code for e in rest.exceptions] == [503]  # type: ignore[attr-defined]


def test_retryable_defaults() -> None:
    assert LLMServerError("x").retryable and LLMRateLimitError("x").retryable and LLMTimeoutError("x").retryable
    assert not LLMQuotaExceededError("x").retryable
    assert not LLMAuthenticationError("x").retryable and not LLMBadRequestError("x").retryable
    assert not LLMStreamError("x", partial_content="ab").retryable
    assert str(LLMServerError("boom", backend="openai", model="m", status_code=503)) == (
        "boom (backend=openai, model=m, status=503)"
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "tomorrow-ish"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str] | None, expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds({"retry-after": when})
    assert seconds is not None and 28 <= seconds <= 31


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "context_length_exceeded", "too long", LLMContextLengthError),
        (400, "", "prompt is too long: 210000 tokens > 200000 maximum", LLMContextLengthError),
        (400, "invalid_request_error", "messages.0: Input does not match the expected shape.", LLMBadRequestError),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", LLMContextLengthError),
        (429, "insufficient_quota", "You exceeded your current quota", LLMQuotaExceededError),
        (429, "rate_limit_exceeded", "slow down", LLMRateLimitError),
        (None, "overloaded_error", "Overloaded", LLMServerError),
        (None, "rate_limit_error", "slow down", LLMRateLimitError),
        (404, "model_not_found", "no such model", LLMNotFoundError),
        (418, "", "teapot", LLMBackendError),
    ],
)
def test_error_for_status(status: int | None, code: str, message: str, expected: type[LLMBackendError]) -> None:
    error = error_for_status(status, message, code=code, backend="b", model="m")
    assert type(error) is expected
    assert error.backend == "b" and error.model == "m"


def test_x_should_retry_header_wins_except_for_quota() -> None:
    assert not error_for_status(503, "busy", headers={"x-should-retry": "false"}).retryable
    assert error_for_status(400, "odd", headers={"x-should-retry": "true"}).retryable
    quota = error_for_status(429, "quota", code="insufficient_quota", headers={"x-should-retry": "true"})
    assert not quota.retryable
    assert error_for_status(409, "conflict").retryable
