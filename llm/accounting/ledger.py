"""`UsageLedger`: running totals of what a manager's calls used and cost, per backend and model, and the optional spend
budget checked before each call (`manager.ledger`, `manager.usage_summary()`). An unknown cost is counted apart,
never as zero. Behaviour: README "Cost, budgets and telemetry"."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from llm.accounting.pricing import DeferredCost, cost_usd
from llm.errors import LLMBudgetExceededError

__all__ = ["LLMBudgetExceededError", "ModelTotals", "UsageLedger", "cost_line", "parse_budget"]

logger = logging.getLogger("llm.accounting.ledger")

#: Token keys summed per backend and model (see `llm.accounting.usage`).
SUMMED_KEYS: Final = (
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens",
)
_SUMMED: Final = frozenset(SUMMED_KEYS)
#: Deferred costs kept as they are at most; beyond, they are folded into counts of identical usage, unpriced.
MAX_PENDING: Final = 4096
#: Distinct unpriced usages kept at most per backend and model (bounds the memory of a ledger never read); beyond,
#: they are priced (genai-prices takes about 0.1 ms a price: as much CPU as a manager call, so never per call).
MAX_UNPRICED: Final = 65536


def parse_budget(value: Any) -> float | None:
    """A budget setting in USD: None or "" for no budget; else a finite number >= 0.

    Raises:
        ValueError: naming the bad value.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"SCOUT_LLM_BUDGET_USD must be a number of USD, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"SCOUT_LLM_BUDGET_USD must be a finite number >= 0, got {value!r}")
    return budget


@dataclass
class ModelTotals:
    """Totals of one backend and model."""

    calls: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    estimated_calls: int = 0  # calls whose usage is an estimate (a stream that ended before its final event)
    pending: list[DeferredCost] = field(default_factory=list, repr=False)
    unpriced: Counter[tuple[Any, ...]] = field(default_factory=Counter, repr=False)

    def fold(self) -> None:
        """Fold the pending costs into counts of identical (model, endpoint, usage) without pricing them: the memory
        stays bounded by the distinct usages, and no call pays for pricing unless the totals are read."""
        pending, self.pending = self.pending, []
        for deferred in pending:
            if deferred.priced:
                self.add_cost(deferred.value)
            else:
                self.unpriced[deferred.key()] += 1
        if len(self.unpriced) >= MAX_UNPRICED:
            self._price_unpriced()

    def settle(self) -> None:
        """Price the deferred costs (each distinct usage once)."""
        if self.pending:
            self.fold()
        if self.unpriced:
            self._price_unpriced()

    def _price_unpriced(self) -> None:
        unpriced, self.unpriced = self.unpriced, Counter()
        for (backend, model, base_url, provider, usage), count in unpriced.items():
            cost = cost_usd(backend, model, dict(usage), base_url, provider=provider)
            if cost is None:
                self.unknown_cost_calls += count
            else:
                self.cost_usd += cost * count

    def add_cost(self, cost: float | None) -> None:
        if cost is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_usd += cost

    def as_dict(self) -> dict[str, Any]:
        totals = {"calls": self.calls, "errors": self.errors, **self.tokens, "cost_usd": self.cost_usd,
                  "unknown_cost_calls": self.unknown_cost_calls}
        if self.estimated_calls:
            totals["estimated_calls"] = self.estimated_calls
        return totals


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


class UsageLedger:
    """Calls, errors, tokens and cost per backend and model, and the budget check. Safe to share between threads
    (each manager has one; the sync entry points run managers in other threads)."""

    def __init__(self, budget_usd: float | None = None) -> None:
        self.budget_usd = parse_budget(budget_usd)
        self._totals: dict[tuple[str, str], ModelTotals] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._reserved = 0.0  # the estimated cost of the calls in flight (`reserve`)
        self._in_flight = 0  # calls holding a reservation

    def __repr__(self) -> str:
        return f"UsageLedger(budget_usd={self.budget_usd!r}, models={len(self._totals)})"

    def _entry(self, backend: str, model: str) -> ModelTotals:
        key = (backend, model)
        entry = self._totals.get(key)
        if entry is None:
            entry = self._totals[key] = ModelTotals()
        return entry

    def record(self, backend: str, model: str, usage: Mapping[str, Any] | None,
               cost: DeferredCost | float | None, *, estimated: bool = False) -> None:
        """One billed call: its usage and its cost (a `DeferredCost` is priced later, when needed); `estimated`: the
        usage is an estimate, not the vendor's report."""
        with self._lock:
            entry = self._totals.get((backend, model)) or self._entry(backend, model)
            entry.calls += 1
            if estimated:
                entry.estimated_calls += 1
            if usage:
                tokens = entry.tokens
                for key, value in usage.items():  # a few keys: cheaper than looking each summed key up
                    if key in _SUMMED and type(value) is int:
                        tokens[key] = tokens.get(key, 0) + value
            if isinstance(cost, DeferredCost):
                entry.pending.append(cost)
                if len(entry.pending) >= MAX_PENDING:
                    entry.fold()
            else:
                entry.add_cost(cost)

    def record_response(self, response: Any, cost: DeferredCost | float | None = None) -> None:
        """`record` for an `LLMResponse`: backend and model from `response.backend_type` / `.model`; `cost` defaults
        to `response.cost_usd` when the response has one."""
        if cost is None:
            cost = getattr(response, "cost_usd", None)
        self.record(str(response.backend_type), str(response.model), response.usage, cost)

    def record_error(self, backend: str, model: str) -> None:
        """One failed attempt on a backend and model."""
        with self._lock:
            self._entry(backend, model).errors += 1

    def record_attempts(self, attempts: Iterable[Any]) -> None:
        """The failed attempts of a call's trail (`Attempt` objects or their dicts); skipped backends (circuit open,
        nothing sent), cancelled attempts and the successful attempt are not errors."""
        for attempt in attempts:
            outcome = str(_field(attempt, "outcome") or "")
            if outcome in ("ok", "cancelled") or outcome.startswith("skipped"):
                continue
            self.record_error(str(_field(attempt, "backend")), str(_field(attempt, "model")))

    @property
    def spent_usd(self) -> float:
        """The known spend so far (prices what is still deferred)."""
        with self._lock:
            for entry in self._totals.values():
                entry.settle()
            return sum(entry.cost_usd for entry in self._totals.values())

    def check_budget(self) -> None:
        """Raise when a budget is set and the known spend has reached it; nothing to do without a budget.

        Raises:
            LLMBudgetExceededError: spend >= budget.
        """
        if self.budget_usd is not None:
            self._spent_below(self.budget_usd)

    def reserve(self, estimate: Callable[[], float | None]) -> float:
        """Admit one call under the budget and reserve its estimated cost until `release`; returns what was reserved
        (0.0 without a budget: `estimate` is not even priced then; an unknown estimate reserves nothing).

        A call starts while the known spend is below the budget and, when other calls are in flight, its estimate
        fits in what their reservations leave: concurrent calls cannot all start on a budget that covers one.

        Raises:
            LLMBudgetExceededError: no room; nothing is reserved.
        """
        budget = self.budget_usd
        if budget is None:
            return 0.0
        spent = self._spent_below(budget)
        cost = estimate()
        cost = cost if cost is not None and math.isfinite(cost) and cost > 0 else 0.0
        with self._lock:
            reserved = self._reserved
            if not self._in_flight or spent + reserved + cost <= budget:
                self._reserved, self._in_flight = reserved + cost, self._in_flight + 1
                return cost
        raise _refused(budget, spent, f"has no room for this call's estimated {cost:.6f} USD ({spent:.6f} USD spent, "
                       f"{reserved:.6f} USD reserved by the calls in flight)")

    def reserved_usd(self) -> float:
        """The estimated cost reserved by the calls in flight."""
        return self._reserved

    def release(self, reserved: float) -> None:
        """A call admitted by `reserve` ended (its cost, when it was billed, is recorded by then)."""
        if self.budget_usd is None:
            return
        with self._lock:
            if self._in_flight:
                self._in_flight -= 1
                self._reserved = max(0.0, self._reserved - reserved) if self._in_flight else 0.0  # no float dust

    def _spent_below(self, budget: float) -> float:
        """The known spend, checked against `budget`."""
        spent = self.spent_usd
        self._warn_unpriced()
        if spent >= budget:
            raise _refused(budget, spent, f"is used up ({spent:.6f} USD spent)")
        return spent

    def _warn_unpriced(self) -> None:
        with self._lock:
            unpriced = [key for key, entry in self._totals.items() if entry.unknown_cost_calls and key not in
                        self._warned]
            self._warned.update(unpriced)
        for backend, model in unpriced:
            logger.warning("%s model %r has no known price: its calls are not counted against the budget",
                           backend, model)

    def summary(self) -> dict[str, Any]:
        """Totals per backend and model (`by_backend[backend][model]`), their sum (`total`), and the budget.

        Each total has `calls`, `errors`, the token keys reported at least once, `cost_usd` (the known spend) and
        `unknown_cost_calls` (successful calls whose cost is unknown and not in `cost_usd`).
        """
        spent = self.spent_usd
        with self._lock:
            by_backend: dict[str, dict[str, Any]] = {}
            total = ModelTotals()
            for (backend, model), entry in self._totals.items():
                by_backend.setdefault(backend, {})[model] = entry.as_dict()
                total.calls += entry.calls
                total.errors += entry.errors
                total.unknown_cost_calls += entry.unknown_cost_calls
                total.estimated_calls += entry.estimated_calls
                total.cost_usd += entry.cost_usd
                for key, value in entry.tokens.items():
                    total.tokens[key] = total.tokens.get(key, 0) + value
        remaining = None if self.budget_usd is None else max(0.0, self.budget_usd - spent)
        return {"by_backend": by_backend, "total": total.as_dict(), "budget_usd": self.budget_usd,
                "spent_usd": spent, "remaining_usd": remaining}

    def reset(self) -> None:
        """Forget every total (the budget stays)."""
        with self._lock:
            self._totals.clear()
            self._warned.clear()


def _refused(budget: float, spent: float, why: str) -> LLMBudgetExceededError:
    return LLMBudgetExceededError(f"spend budget of {budget:g} USD {why}; no request was sent. Raise "
                                  "SCOUT_LLM_BUDGET_USD or reset the manager's ledger to continue",
                                  budget_usd=budget, spent_usd=spent)


def cost_line(summary: Mapping[str, Any]) -> str:
    """One line for a person (the CLI's `-v`): calls, tokens, known cost, and what is not priced.

    `cost: 0.000160 USD for 2 calls (28 tokens); 1 call with unknown price (ollama llama3); budget 5 USD, 4.99 left`
    """
    total = summary["total"]
    calls = total["calls"]
    line = f"cost: {total['cost_usd']:.6f} USD for {calls} call{'s' if calls != 1 else ''}"
    if "total_tokens" in total:
        line += f" ({total['total_tokens']} tokens)"
    if total["errors"]:
        line += f", {total['errors']} failed attempt{'s' if total['errors'] != 1 else ''}"
    if total["unknown_cost_calls"]:
        unknown = sorted(f"{backend} {model}" for backend, models in summary["by_backend"].items()
                         for model, entry in models.items() if entry["unknown_cost_calls"])
        count = total["unknown_cost_calls"]
        line += f"; {count} call{'s' if count != 1 else ''} with unknown price ({', '.join(unknown)})"
    if summary.get("budget_usd") is not None:
        line += f"; budget {summary['budget_usd']:g} USD, {summary['remaining_usd']:.6f} left"
    return line
