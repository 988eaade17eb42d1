"""What a call cost, in USD, from the maintained price data of genai-prices (https://github.com/pydantic/genai-prices),
priced from the usage and the model that answered, at the provider the backend reaches (`BACKEND_PRICE_PROVIDERS`,
or the base URL). None means unknown, never zero. genai-prices is imported on the first price, never by `import llm`.
Behaviour: README "Cost, budgets and telemetry"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import logging

__all__ = [
    "BACKEND_PRICE_PROVIDERS",
    "CostField",
    "DeferredCost",
    "cost_usd",
    "defer_cost",
    "load_prices",
    "price_source",
]


def _logger() -> logging.Logger:
    import logging  # where used: `llm.base` imports this module, and `import llm` does not load logging

    return logging.getLogger("llm.accounting.pricing")

#: genai-prices provider id per backend when it talks to its vendor's own endpoint; None: no price (local compute).
BACKEND_PRICE_PROVIDERS: Final[Mapping[str, str | None]] = {
    "openai": "openai",
    "claude": "anthropic",
    "gemini": "google",
    "deepseek": "deepseek",
    "ollama": None,
    "local": None,
}

#: How genai-prices finds the provider: ("id", provider id) or ("url", the endpoint's base URL).
PriceSource = tuple[str, str]

_state: dict[str, Any] = {}  # "calc" / "usage": genai-prices' functions once loaded; "missing": True if not installed


def load_prices() -> bool:
    """Import genai-prices now (it takes about 0.4 s once); False, with one warning, when it is not installed."""
    if "calc" in _state:
        return True
    if _state.get("missing"):
        return False
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        _state["missing"] = True
        _logger().warning("genai-prices is not installed: every cost is unknown (pip install genai-prices)")
        return False
    _state["calc"], _state["usage"] = calc_price, Usage
    return True


def price_source(backend: str, base_url: str | None = None, provider: str | None = None) -> PriceSource | None:
    """Where genai-prices should look the price up for a backend; None when the backend's calls cost nothing we
    know of (a local model)."""
    if provider:
        return ("id", provider)
    known = backend in BACKEND_PRICE_PROVIDERS
    vendor = BACKEND_PRICE_PROVIDERS.get(backend)
    if known and vendor is None:
        return None
    if base_url:
        return ("url", base_url)
    return ("id", vendor) if vendor else None


def _genai_usage(usage: Mapping[str, Any]) -> dict[str, int] | None:
    """Our usage -> genai-prices' `Usage` keywords; None when the prompt or completion count is unknown.

    genai-prices counts `input_tokens` with the cache reads and writes included, as `prompt_tokens` does.
    """
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    values = {"input_tokens": prompt, "output_tokens": completion}
    for ours, theirs in (("cached_tokens", "cache_read_tokens"), ("cache_creation_tokens", "cache_write_tokens"),
                         ("reasoning_tokens", "output_reasoning_tokens")):
        value = usage.get(ours)
        if isinstance(value, int) and value:
            values[theirs] = value
    return values


def cost_usd(backend: str, model: str, usage: Mapping[str, Any] | None, base_url: str | None = None, *,
             provider: str | None = None) -> float | None:
    """The USD cost of one call, computed by genai-prices; None when unknown (see the module docstring).

    Args:
        backend: the backend's registry name (`"openai"`, `"claude"`, ...).
        model: the model that answered (`response.model`).
        usage: the call's usage (`response.usage`).
        base_url: the backend's `LLMConfig.base_url`, when set.
        provider: a genai-prices provider id that overrides the mapping (a gateway in front of a known vendor).
    """
    source = price_source(backend, base_url, provider)
    if source is None or not usage or not model:
        return None
    values = _genai_usage(usage)
    if values is None or not load_prices():
        return None
    kind, where = source
    try:
        usage_object = _state["usage"](**values)
        if kind == "id":
            result = _state["calc"](usage_object, model, provider_id=where)
        else:
            result = _state["calc"](usage_object, model, provider_api_url=where)
        return float(result.total_price)
    except (LookupError, ValueError, ArithmeticError) as exc:  # not listed, or usage it cannot price
        _logger().debug("no price for %s model %r (%s): %s", backend, model, where, exc)
        return None


class DeferredCost:
    """A call's cost, computed by `cost_usd` on the first read of `value` and kept: pricing one call costs about as
    much CPU as the rest of a manager call, so a response nobody asks the cost of is never priced."""

    __slots__ = ("_value", "backend", "base_url", "model", "provider", "usage")

    _PENDING: Final = object()

    def __init__(self, backend: str, model: str, usage: Mapping[str, Any] | None, base_url: str | None = None,
                 provider: str | None = None) -> None:
        self.backend, self.model, self.usage = backend, model, usage
        self.base_url, self.provider = base_url, provider
        self._value: object = DeferredCost._PENDING

    @property
    def priced(self) -> bool:
        """Whether `value` has been computed."""
        return self._value is not DeferredCost._PENDING

    def key(self) -> tuple[Any, ...]:
        """What the price depends on (equal keys, equal prices): backend, model, base URL, provider, usage items."""
        usage = tuple(self.usage.items()) if self.usage else ()
        return (self.backend, self.model, self.base_url, self.provider, usage)

    @property
    def value(self) -> float | None:
        if self._value is DeferredCost._PENDING:
            self._value = cost_usd(self.backend, self.model, self.usage, self.base_url, provider=self.provider)
        value = self._value
        return value if isinstance(value, float) else None


class CostField:
    """The descriptor behind `LLMResponse.cost_usd`: stores what is assigned; a `DeferredCost` is computed on the first
    read and replaced by its value."""

    def __get__(self, obj: Any, owner: type | None = None) -> float | None:
        if obj is None:
            return None
        value = obj.__dict__.get("_cost_usd")
        if isinstance(value, DeferredCost):
            value = obj.__dict__["_cost_usd"] = value.value
        return value if isinstance(value, float) else None

    def __set__(self, obj: Any, value: float | DeferredCost | None) -> None:
        obj.__dict__["_cost_usd"] = value


def defer_cost(response: Any, backend: str, base_url: str | None = None, provider: str | None = None) -> DeferredCost:
    """Attach the (not yet computed) cost of `response` -- priced from its `model` and `usage` -- and return it, so
    that a `UsageLedger` can share it: the price is computed once, by whichever reads it first."""
    deferred = DeferredCost(backend, response.model, response.usage, base_url, provider)
    response.__dict__["_cost_usd"] = deferred
    return deferred
