"""`Held`: what one attempt of a manager call holds while it runs (the breaker's ticket, the rate limiter's permit, the
backend's concurrency slot), given back on every exit path: `llm.call.chain` opens it as an async context manager
around the whole attempt, admission included, so a cancellation or a timeout at any await returns what was taken.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from llm.fleet.limiter import Permit
from llm.health.breaker import Ticket
from llm.health.slot import BackendSlot

__all__ = ["Held", "nothing"]


def nothing() -> None:
    return None


class Held:
    """The admission of one attempt. Each part is taken over (set to None, or `nothing`) by the code that settles it
    on success: the outcome takes the ticket, the answer settles the permit, the operation gets the concurrency
    slot; whatever is still held at the exit goes back: the ticket without an outcome, the permit's tokens (and its
    request too when nothing was sent), the slot.
    """

    __slots__ = ("permit", "release", "sent", "slot", "ticket")

    def __init__(self, slot: BackendSlot) -> None:
        self.slot = slot
        self.ticket: Ticket | None = None
        self.permit: Permit | None = None
        self.release: Callable[[], None] = nothing
        self.sent = False  # whether the request may have reached the backend

    def take_ticket(self) -> Ticket | None:
        ticket, self.ticket = self.ticket, None
        return ticket

    def take_permit(self) -> Permit | None:
        permit, self.permit = self.permit, None
        return permit

    def take_release(self) -> Callable[[], None]:
        release, self.release = self.release, nothing
        return release

    async def __aenter__(self) -> Held:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # attribute reads, not the take_* calls: this runs on every attempt
        ticket, release, permit = self.ticket, self.release, self.permit
        if ticket is not None:
            self.ticket = None
            self.slot.release(ticket)
        if release is not nothing:
            self.release = nothing
            release()
        if permit is not None:
            self.permit = None
            await permit.release(sent=self.sent)
