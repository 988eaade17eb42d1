"""The small rules every vendor adapter applies the same way: the SDK check with its install hint, the connect
timeout cap, finish-reason tables, extras a vendor has no equivalent for, closing an SDK stream.

The rules adapters follow are in `llm.backends.sdk.adapter`; how to add a backend is in ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

from llm.base import FinishReason
from llm.core.awaitables import maybe_await
from llm.errors import LLMConfigError, LLMValidationError

__all__ = ["CONNECT_TIMEOUT", "aclose_quietly", "normalise_finish_reason", "refuse_params", "require_sdk"]

#: Connect timeout cap (seconds): a vendor that does not accept a TCP connection in this long is down.
CONNECT_TIMEOUT = 10.0


def require_sdk(module: str, extra: str, display: str) -> None:
    """Fail with an install hint when a vendor SDK is missing; checks without importing it."""
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise LLMConfigError(
            f"{display} library not available. Install with: pip install 'scout-llm[{extra}]'"
        )


def normalise_finish_reason(table: Mapping[str, FinishReason], reason: str | None) -> FinishReason | None:
    """A vendor's finish reason -> ours, through the table its adapter declares (`FINISH_REASONS`): an unknown reason
    is "stop", none at all stays None (the answer has not finished)."""
    return table.get(reason, "stop") if reason else None


def refuse_params(effective: Mapping[str, Any], names: Iterable[str], vendor: str) -> None:
    """Raise for the first of `names` (extras request validation accepts, which this vendor has no equivalent for)
    set in the call's settings: refused before sending rather than silently dropped.

    Raises:
        LLMValidationError: naming the field, `extra_params.<name>`.
    """
    for name in names:
        if name in effective:
            field = f"extra_params.{name}"
            raise LLMValidationError(f"{field}: {vendor} has no equivalent; remove it", field=field)


#: The most of an SDK exception's text an error message quotes (google-genai's and json's quote the raw answer).
QUOTE_LIMIT = 300


def quoted(exc: BaseException) -> str:
    """An SDK exception's text for an error message, cut to `QUOTE_LIMIT` characters."""
    text = str(exc)
    return text if len(text) <= QUOTE_LIMIT else f"{text[:QUOTE_LIMIT]}... ({len(text)} characters)"


async def aclose_quietly(stream: Any) -> None:
    """Close an SDK stream (async generator or stream object) and its HTTP response."""
    for name in ("aclose", "close"):
        closer = getattr(stream, name, None)
        if closer is not None:
            await maybe_await(closer())
            return
