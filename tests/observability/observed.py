"""The integration seams of llm/telemetry.py, llm/pricing.py and llm/ledger.py, applied around a real `LLMManager`
from outside (the manager is not changed): what the lead wires into `LLMManager.generate` / `stream`.

The differences from the in-manager wiring: the attempt trail is replayed from `metadata["attempts"]` after the call
(inside the manager, `Call._trail` reports each attempt as it ends), and a failed call reports no attempts here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from llm.base import LLMRequest, LLMResponse, ResponseDone, StreamEvent
from llm.ledger import UsageLedger
from llm.manager import LLMManager
from llm.pricing import DeferredCost, defer_cost
from llm.telemetry import CallSpan, LLMTelemetry


class ObservedManager:
    """`generate` and `stream` of a manager with the budget check, telemetry, cost and ledger around them.

    `price_provider` names the price list for the fake servers' 127.0.0.1 URLs (a gateway, as far as pricing knows).
    """

    def __init__(self, manager: LLMManager, telemetry: LLMTelemetry, ledger: UsageLedger | None = None,
                 price_provider: str | None = None) -> None:
        self.manager = manager
        self.telemetry = telemetry
        self.ledger = ledger or UsageLedger()
        self.price_provider = price_provider

    def _start(self, request: LLMRequest, backend_type: str | None, stream: bool) -> CallSpan:
        self.ledger.check_budget()
        name = backend_type or self.manager.get_default_backend()
        assert name is not None
        backend = self.manager.backends[name]
        override = request.extra_params.get("model_name_override")
        model = str(override or backend.config.model_name)
        return self.telemetry.start_call(request, model, name, base_url=backend.config.base_url, stream=stream,
                                         activate=not stream)

    def _done(self, span: CallSpan, response: LLMResponse) -> DeferredCost:
        attempts = response.metadata.get("attempts", [])
        for attempt in attempts:
            span.attempt(attempt["backend"], attempt["model"], attempt["outcome"], attempt["elapsed"],
                         attempt.get("status_code"))
        base_url = self.manager.backends[response.backend_type].config.base_url
        deferred = defer_cost(response, response.backend_type, base_url, self.price_provider)
        self.ledger.record_response(response, deferred)
        self.ledger.record_attempts(attempts)
        span.finish(response)
        return deferred

    async def generate(self, request: LLMRequest, backend_type: str | None = None) -> tuple[LLMResponse, Any]:
        span = self._start(request, backend_type, stream=False)
        with span:
            response = await self.manager.generate(request, backend_type)
            deferred = self._done(span, response)
        return response, deferred

    async def stream(self, request: LLMRequest, backend_type: str | None = None) -> AsyncGenerator[StreamEvent, None]:
        span = self._start(request, backend_type, stream=True)
        events = self.manager.stream(request, backend_type)
        first = True
        try:
            with span:
                async for event in events:
                    if first:
                        span.first_chunk()
                        first = False
                    if isinstance(event, ResponseDone):
                        self._done(span, event.response)
                    yield event
        finally:
            await events.aclose()
