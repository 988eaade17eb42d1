"""Which backends a call tries, in which order: `provider:model` choices, the failover order after the first
backend, and the error for a backend that cannot be chosen. README.md ("Routing and fallback") says the rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from llm.backends.bootstrap import key_variables
from llm.base import LLMRequest
from llm.core.names import canonical_backend, describe_known, is_known, split_model_ref
from llm.errors import LLMConfigError, LLMError, LLMValidationError

__all__ = ["failover_order", "not_available", "with_model"]


def with_model(choice: str, request: LLMRequest) -> tuple[str, LLMRequest]:
    """`provider:model` (`"openai:gpt-4.1-mini"`): the backend, and the request asking that backend for the model
    (a copy; fallbacks that do not list the model use their own). Any other choice comes back as it is."""
    backend, model = split_model_ref(choice)
    if backend is None:
        return choice, request
    extra = {**(request.extra_params or {}), "model_name_override": model}
    return backend, dataclasses.replace(request, extra_params=extra)


def failover_order(first: str, registered: Collection[str], order: Iterable[str]) -> list[str]:
    """`first`, then the registered backends named in `order` (aliases allowed), then the others in registration
    order."""
    names = tuple(map(canonical_backend, order))
    ranked = [name for name in names if name in registered] + [name for name in registered if name not in names]
    return [first, *(name for name in ranked if name != first)]


def not_available(name: str, registered: Collection[str], unavailable: Mapping[str, str]) -> LLMError:
    """The error for a backend that cannot be chosen: what was asked, why, and what can be."""
    listed = ", ".join(registered) or "none"
    if not is_known(name):
        return LLMValidationError(f"Backend not available: {name}: no backend has that name (known: "
                                  f"{describe_known()}; registered: {listed})", field="backend_type")
    why = unavailable.get(name)
    if why is None:
        keys = key_variables(name)
        why = "not configured" + (f" (set {' or '.join(keys)})" if keys else "")
    return LLMConfigError(f"Backend not available: {name}: {why} (registered: {listed})")
