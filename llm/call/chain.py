"""`Call`: one manager call. The failover chain walked under one deadline, each backend's turn a plain retry loop
(the one retry owner), and each attempt admitted by the rate limiter, the breaker and the concurrency limit first.

What a call promises is in README.md ("Call", "Routing and fallback"); the path of a call is in ARCHITECTURE.md. A
stream's attempt is opening it up to its first event; the relay after it is `llm.call.relay`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from llm.accounting.ledger import UsageLedger
from llm.accounting.pricing import DeferredCost, cost_usd, defer_cost
from llm.accounting.span import NOOP_SPAN, CallSpan
from llm.accounting.usage import usage_dict
from llm.base import LLMRequest, LLMResponse
from llm.call.admission import Held, nothing
from llm.call.attempt import OpenedStream, model_for
from llm.call.outcome import Attempt, final_error
from llm.call.retry import Deadline, blocks_failover, is_retryable, retry_wait
from llm.core.policy import ManagerPolicy
from llm.core.secrets import scrub_exception
from llm.errors import (
    LLMBackendError,
    LLMCircuitOpenError,
    LLMDeadlineExceededError,
    LLMLocalRateLimitError,
    LLMQuotaExceededError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from llm.fleet.limiter import Permit, RateLimiter, estimate_tokens
from llm.health.slot import BackendSlot

__all__ = ["Call", "Operation", "total_tokens"]

T = TypeVar("T")
#: An attempt's work: (slot, request, release) -> result; it calls `release()` (the concurrency slot) when done with
#: it, or hands it on (an opened stream holds its slot until closed).
Operation = Callable[[BackendSlot, LLMRequest, Callable[[], None]], Awaitable[T]]

logger = logging.getLogger("llm.manager")

#: (backend, model) pairs whose "answers with its configured model instead" has been logged.
_model_swaps_logged: set[tuple[str, str]] = set()


class Call:
    """One `generate` or `stream` call over an ordered chain of backends.

    The manager sets what observes the call: `span` (its telemetry span, told of each attempt and of the answer),
    `ledger` (told of the answer and its deferred cost) and `price_providers` (genai-prices provider id per backend).
    """

    span: CallSpan = NOOP_SPAN
    ledger: UsageLedger | None = None
    price_providers: Mapping[str, str] | None = None
    stream_timeout: float | None = None  # a stream's whole-stream limit from the call's start (None: no limit)
    reserved = 0.0  # the budget the ledger reserved for the call (`UsageLedger.reserve`), released when it ends

    def __init__(self, slots: Sequence[BackendSlot], request: LLMRequest, policy: ManagerPolicy,
                 deadline: Deadline, limiter: RateLimiter | None = None) -> None:
        self.slots = list(slots)
        self.limiter = limiter
        self.request = request
        self.policy = policy
        self.deadline = deadline
        self.min_time = min(policy.min_attempt_time, deadline.budget / 4)
        self.attempts: list[Attempt] = []
        self.errors: list[tuple[str, BaseException]] = []  # (backend, the error that ended its turn)
        self.last_failure: dict[str, Exception] = {}  # backend -> its last real (sent) attempt's error
        self.sent = 0
        self.deadline_hit = False
        self.timed = True  # whether an attempt's time is a latency sample (not for streams: only their first event)
        self.model = ""  # the model of the latest attempt

    async def run(self, op: Operation[T], limit: Callable[[BackendSlot], float]) -> tuple[T, BackendSlot]:
        """Walk the chain: each backend at most once, retried per the policy; the first success wins.

        Raises:
            the only backend's own error; `LLMAllBackendsFailedError` when several failed; `LLMCircuitOpenError` when
            every backend was skipped; `LLMDeadlineExceededError` when the deadline ended the call.
        """
        for index, slot in enumerate(self.slots):
            if self.sent and self.deadline.remaining() < self.min_time:
                self.deadline_hit = True
                break
            # The deadline ended the call only if it ended the last turn that ran: a fallback that answers 401 after
            # the first backend used up the backoff budget reports its 401, not a timeout.
            deadline_before, self.deadline_hit = self.deadline_hit, False
            try:
                return await self._run_on(index, slot, op, limit(slot)), slot
            except Exception as exc:
                if isinstance(exc, LLMCircuitOpenError) and slot.name in self.last_failure:
                    exc = self.last_failure[slot.name]  # the breaker opened between retries: report what happened
                if isinstance(exc, LLMCircuitOpenError):  # a skipped backend changes nothing about the deadline
                    self.deadline_hit = self.deadline_hit or deadline_before
                self.errors.append((slot.name, exc))
                if blocks_failover(exc, self.policy.structured_failover):
                    break
                if index + 1 < len(self.slots) and not isinstance(exc, LLMCircuitOpenError):
                    logger.warning("%s failed (%s); trying %s", slot.name, type(exc).__name__,
                                   self.slots[index + 1].name)
        raise self.final_error()

    async def _run_on(self, index: int, slot: BackendSlot, op: Operation[T], limit: float) -> T:
        """One backend's turn: attempts until one succeeds or `_stop_reason` ends the turn (its error is raised).

        A plain loop rather than tenacity: the stop rule reads the call's deadline, the other backends' breakers and
        the vendor's Retry-After together, and reads top to bottom here and in `_stop_reason`.
        """
        request = self._request_for(index, slot)
        number = 0
        while True:
            number += 1
            try:
                return await self._attempt(slot, request, op, limit)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                wait = self._wait(slot, exc, number)
                reason = self._stop_reason(index, slot, exc, number, wait)
                if reason is not None:
                    logger.debug("%s: not retrying (%s)", slot.name, reason)
                    raise
                logger.info("%s attempt %d failed (%s, status %s); retrying in %.2fs", slot.name, number,
                            type(exc).__name__, getattr(exc, "status_code", None), wait)
            await asyncio.sleep(wait)

    def _request_for(self, index: int, slot: BackendSlot) -> LLMRequest:
        """The request for one backend: a model override the first backend was asked for goes to a fallback only
        when that backend lists the model; otherwise the fallback uses its own configured model. The caller's
        request is never changed."""
        override = self.request.extra_params.get("model_name_override") if self.request.extra_params else None
        if index == 0 or not override:
            return self.request
        try:
            served = override in slot.backend.get_available_models()
        except Exception:  # a listing that fails means "unknown", which means "not served"
            served = False
        if served:
            return self.request
        model = slot.backend.config.model_name
        if (slot.name, override) not in _model_swaps_logged:  # said once per backend and model, not on every call
            _model_swaps_logged.add((slot.name, override))
            logger.warning("%s does not list model %r (asked of %s); it answers with its configured model %r",
                           slot.name, override, self.slots[0].name, model)
        extra = {**self.request.extra_params, "model_name_override": model}
        return dataclasses.replace(self.request, extra_params=extra)

    async def _attempt(self, slot: BackendSlot, request: LLMRequest, op: Operation[T], limit: float) -> T:
        model = self.model = model_for(slot.backend, request)  # the last attempt's model is the winner's
        async with Held(slot) as held:  # ticket, permit and concurrency slot go back on every exit
            await self._admit(slot, request, model, held)
            held.release = await self._acquire_slot(slot, model)
            bound = min(limit, self.deadline.remaining())
            slot.requests += 1
            self.sent += 1
            held.sent = True
            start = time.monotonic()
            release, held.release = held.release, nothing  # the operation gives the slot back when it is done
            try:
                async with asyncio.timeout(bound):
                    result = await op(slot, request, release)
            except asyncio.CancelledError:
                self.record(slot, model, "cancelled", start)
                raise
            except TimeoutError as exc:  # our bound expired (an SDK's own timeout arrives as LLMTimeoutError)
                error = self._timeout_error(slot, model, bound, limit)
                self._failed(slot, held.take_ticket(), model, start, error)
                raise error from exc
            except Exception as exc:
                self._failed(slot, held.take_ticket(), model, start, exc)
                for billed in getattr(exc, "responses", ()):  # answers billed on the way (a structured answer's repair)
                    self._bill(billed, slot)
                await self._pause_for(slot, exc)
                raise
            permit, held.permit = held.permit, None
            if permit is not None:
                if isinstance(result, OpenedStream):
                    result.permit = permit  # settled by the usage of its final event, released by its close
                else:
                    await permit.settle(total_tokens(result))
            elapsed = time.monotonic() - start
            ticket, held.ticket = held.ticket, None
            assert ticket is not None
            slot.succeeded(ticket, elapsed if self.timed else None)
            self.record(slot, model, "ok", start)
            return result

    async def _admit(self, slot: BackendSlot, request: LLMRequest, model: str, held: Held) -> None:
        """Take the rate limiter's permit (when limits are set), then the breaker's ticket (checked against the
        fleet's record when state is shared), into `held`. The limiter goes first: waiting for capacity holds no
        half-open probe, no concurrency slot and no connection.

        Raises:
            LLMLocalRateLimitError: no capacity before the deadline. LLMCircuitOpenError: the breaker refuses.
        """
        # (no wait for capacity when the local breaker would refuse anyway)
        if self.limiter is not None and slot.breaker.would_admit():
            held.permit = await self._permit(slot, request, model)
        ticket = slot.breaker.admit()
        wait = 0.0 if ticket is not None else slot.breaker.retry_in()
        if ticket is not None and slot.shared is not None:
            local = ticket
            try:  # until the fleet admits it, the ticket is only the local breaker's: it goes back there alone
                ticket, wait = await slot.shared.admit(local)
            except BaseException:
                slot.breaker.release(local)
                raise
            if ticket is None:
                slot.breaker.release(local)
        if ticket is None:
            self._skipped(slot, model, "skipped: circuit open")
            raise LLMCircuitOpenError(f"circuit open after repeated failures; retry in {wait:.1f}s",
                                      backend=slot.name, model=model, retry_after=wait)
        held.ticket = ticket

    async def _permit(self, slot: BackendSlot, request: LLMRequest, model: str) -> Permit:
        """Wait for the limiter's room for this attempt, within the call's deadline (less the time an attempt needs).

        Raises:
            LLMLocalRateLimitError: no room before the deadline; raised at once, no request sent.
        """
        assert self.limiter is not None
        estimate = estimate_tokens(request, slot.backend.config.max_tokens)
        try:
            return await self.limiter.acquire(slot.name, estimate, max(0.0, self.deadline.remaining() - self.min_time))
        except LLMLocalRateLimitError as exc:
            exc.model = model
            self._skipped(slot, model, "skipped: client-side rate limit")
            raise

    async def _pause_for(self, slot: BackendSlot, exc: BaseException) -> None:
        """A vendor 429 with Retry-After pauses the backend's admissions (for the fleet)."""
        retry_after = getattr(exc, "retry_after", None)
        if (isinstance(exc, LLMRateLimitError) and not isinstance(exc, LLMQuotaExceededError) and retry_after
                and self.limiter is not None):
            await self.limiter.pause(slot.name, retry_after)

    async def _acquire_slot(self, slot: BackendSlot, model: str) -> Callable[[], None]:
        """Wait for one of the backend's concurrency slots (when it has a limit), within the call's deadline.

        The wait is not part of the attempt: no attempt timeout runs, and a wait that outlasts the deadline is the
        deadline's error, never the backend's (its breaker does not hear of it).
        """
        semaphore = slot.limit()
        if semaphore is None:
            return nothing
        if semaphore.locked():
            try:
                async with asyncio.timeout(max(0.0, self.deadline.remaining() - self.min_time)):
                    await semaphore.acquire()
            except TimeoutError:
                self.deadline_hit = True
                self._skipped(slot, model, "skipped: no free concurrency slot")
                raise LLMTimeoutError("no free concurrency slot before the call's deadline", backend=slot.name,
                                      model=model, retryable=False) from None
        else:
            await semaphore.acquire()
        return semaphore.release

    def _timeout_error(self, slot: BackendSlot, model: str, bound: float, limit: float) -> LLMBackendError:
        """The error of an attempt our bound cut: the backend's timeout (counted against it), or, when the call's
        deadline was the nearer bound, the caller's (`LLMDeadlineExceededError`: not the backend's fault)."""
        if bound < limit:
            self.deadline_hit = True
            return LLMDeadlineExceededError(f"no answer within {bound:.2f}s (the call's deadline)", backend=slot.name,
                                            model=model)
        return LLMTimeoutError(f"no answer within {bound:.2f}s (the attempt timeout)", backend=slot.name,
                               model=model)

    def _failed(self, slot: BackendSlot, ticket: Any, model: str, start: float, exc: Exception) -> None:
        scrub_exception(exc, slot.backend.config.secret())  # a custom backend's errors, too, leave without its key
        slot.failed(ticket, exc)
        self.last_failure[slot.name] = exc
        self.record(slot, model, type(exc).__name__, start, getattr(exc, "status_code", None))

    def record(self, slot: BackendSlot, model: str, outcome: str, start: float, status: int | None = None) -> None:
        """Add an attempt that started at `start` to the trail and the span."""
        elapsed = time.monotonic() - start
        self.attempts.append(Attempt(slot.name, model, outcome, elapsed, status))
        self.span.attempt(slot.name, model, outcome, elapsed, status)

    def _skipped(self, slot: BackendSlot, model: str, why: str) -> None:
        self.attempts.append(Attempt(slot.name, model, why, 0.0))
        self.span.attempt(slot.name, model, why, 0.0)

    # -- the retry rule --------------------------------------------------------------------------------------------

    def _wait(self, slot: BackendSlot, exc: BaseException, number: int) -> float:
        base = self.policy.retry_delay if self.policy.retry_delay is not None else slot.backend.config.retry_delay
        return retry_wait(exc, number, base, self.policy.backoff_max, self.policy.jitter)

    def _stop_reason(self, index: int, slot: BackendSlot, exc: BaseException | None, number: int,
                     sleep: float) -> str | None:
        attempts = self.policy.retry_attempts or slot.backend.config.retry_attempts
        retry_after = getattr(exc, "retry_after", None)
        if number >= attempts:
            return "attempts exhausted"
        if retry_after is not None and retry_after > self.policy.retry_after_max:
            return f"Retry-After {retry_after:g}s is above the {self.policy.retry_after_max:g}s cap"
        if isinstance(exc, LLMRateLimitError) and any(s.breaker.would_admit() for s in self.slots[index + 1:]):
            return "rate limited while another backend can serve"
        if not slot.breaker.would_admit():
            return "circuit opened"
        if self.deadline.remaining() < sleep + self.min_time:
            self.deadline_hit = True
            return "the deadline would pass before the next attempt"
        return None

    # -- the outcome ------------------------------------------------------------------------------------------------

    def finish(self, response: LLMResponse, slot: BackendSlot) -> LLMResponse:
        """Name the backend that served, attach the attempt trail and the (deferred) cost, and tell the ledger and the
        span."""
        if response.metadata is None:
            response.metadata = {}
        response.metadata["attempts"] = [attempt.as_dict() for attempt in self.attempts]
        self._bill(response, slot)
        if self.ledger is not None and len(self.attempts) > 1:
            self.ledger.record_attempts(self.attempts)
        self.span.finish(response)
        return response

    def _bill(self, response: LLMResponse, slot: BackendSlot) -> None:
        """One billed answer of `slot`'s: its (deferred) cost attached, and the ledger told of its usage and cost."""
        response.backend_type = slot.name
        cost = defer_cost(response, slot.name, slot.backend.config.base_url, self._provider(slot))
        if self.ledger is not None:
            self.ledger.record_response(response, cost)

    def record_unfinished(self, slot: BackendSlot, model: str, partial: str) -> int:
        """Record a stream that ended after its first event without its final one (failed, closed early, cancelled):
        the vendor billed it, so it is a call of the ledger, at an estimated usage (the prompt as the limiter estimates
        it, `partial` at four characters a token), counted as estimated. Returns the estimated total tokens."""
        request = self.request
        prompt = estimate_tokens(request) - max(0, request.max_tokens or 0)
        completion = math.ceil(len(partial) / 4)
        usage = usage_dict(prompt, completion)
        if self.ledger is not None:
            cost = DeferredCost(slot.name, model, usage, slot.backend.config.base_url, self._provider(slot))
            self.ledger.record(slot.name, model, usage, cost, estimated=True)
        return prompt + completion

    def estimated_cost(self) -> float | None:
        """What the call is expected to cost on its first backend: `estimate_tokens`' input and output, priced (the
        budget's reservation); None when unknown."""
        slot, request = self.slots[0], self.request
        default = slot.backend.config.max_tokens
        default = default if type(default) is int else 0
        output = max(0, request.max_tokens if request.max_tokens is not None else default)
        usage = usage_dict(estimate_tokens(request, default) - output, output)
        return cost_usd(slot.name, model_for(slot.backend, request), usage, slot.backend.config.base_url,
                        provider=self._provider(slot))

    def _provider(self, slot: BackendSlot) -> str | None:
        providers = self.price_providers
        return providers.get(slot.name) if providers else None

    def final_error(self) -> BaseException:
        """The error a failed call raises (see `run`)."""
        return final_error(self.errors, self.attempts, self.deadline.budget, self.sent, self.deadline_hit)


def total_tokens(response: Any) -> int | None:
    usage = getattr(response, "usage", None)
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) else None
