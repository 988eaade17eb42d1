"""A call's trail and the error a failed call raises: one `Attempt` per try (`response.metadata["attempts"]`), and
`final_error`, which picks what the caller sees from the errors the chain collected (README.md, "Errors").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from llm.errors import (
    LLMAllBackendsFailedError,
    LLMBackendError,
    LLMCircuitOpenError,
    LLMDeadlineExceededError,
    LLMError,
)

__all__ = ["Attempt", "final_error"]


@dataclasses.dataclass(slots=True)
class Attempt:
    """One entry of the attempt trail."""

    backend: str
    model: str
    outcome: str  # "ok", "cancelled", "skipped: circuit open", or the error class name
    elapsed: float
    status_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "outcome": self.outcome,
                "elapsed": round(self.elapsed, 4), "status_code": self.status_code}


def final_error(errors: Sequence[tuple[str, BaseException]], attempts: Sequence[Attempt], budget: float, sent: int,
                deadline_hit: bool) -> BaseException:
    """The error a failed call raises, from the (backend, error) pairs that ended each backend's turn.

    The deadline's error when the deadline ended the call; the only backend's own error when one backend really
    failed (a skipped one adds a note); `LLMAllBackendsFailedError` when several did; `LLMCircuitOpenError` when
    every backend was skipped.
    """
    real = [(name, exc) for name, exc in errors if not isinstance(exc, LLMCircuitOpenError)]
    skipped = [exc for _, exc in errors if isinstance(exc, LLMCircuitOpenError)]
    if deadline_hit or not errors:
        return _deadline_error(errors, attempts, budget, sent)
    if not real:
        return skipped[0] if len(skipped) == 1 else _all_open_error(skipped)
    if len(real) == 1:  # the contract re-raises what a custom backend raised, as it was
        error = real[0][1]
        for skip in skipped:
            error.add_note(f"{skip.backend} was skipped: {skip.message}")
        return error
    summary = "; ".join(f"{name}: {type(exc).__name__}" for name, exc in errors)
    return LLMAllBackendsFailedError(f"all {len(errors)} backends failed ({summary})",
                                     [_as_llm_error(name, exc) for name, exc in errors])


def _deadline_error(errors: Sequence[tuple[str, BaseException]], attempts: Sequence[Attempt], budget: float,
                    sent: int) -> LLMDeadlineExceededError:
    last = errors[-1][1] if errors else None
    trail = ", ".join(f"{a.backend} {a.outcome}" for a in attempts) or "none"
    error = LLMDeadlineExceededError(
        f"deadline of {budget:g}s reached after {sent} attempt(s): {trail}",
        errors=[exc for _, exc in errors],
        attempts=[attempt.as_dict() for attempt in attempts],
        backend=errors[-1][0] if errors else None,
        retry_after=getattr(last, "retry_after", None),
    )
    error.__cause__ = last
    return error


def _as_llm_error(name: str, exc: BaseException) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    wrapped = LLMBackendError(f"{type(exc).__name__}: {exc}", backend=name)
    wrapped.__cause__ = exc
    return wrapped


def _all_open_error(skipped: Sequence[LLMCircuitOpenError]) -> LLMCircuitOpenError:
    wait = min(exc.retry_after or 0.0 for exc in skipped)
    names = ", ".join(str(exc.backend) for exc in skipped)
    return LLMCircuitOpenError(f"every backend's circuit is open ({names}); retry in {wait:.1f}s", retry_after=wait)
