"""`checked_seconds`: the one check of a duration that comes from outside (settings, a policy, a backend's config);
`checked_int` and `checked_number` the same for counts and plain numbers.

NaN compares false with everything and would silently disable every bound built from it; infinity, or an absurd
value, would wait forever; a bool is not a number of seconds. Each caller names its own error type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

__all__ = ["MAX_INT32", "MAX_SECONDS", "checked_int", "checked_number", "checked_seconds"]

#: Largest `max_tokens` and `top_k` accepted: every vendor stores them as 32-bit integers.
MAX_INT32 = 2**31 - 1

#: The longest duration accepted anywhere: a week (a daily quota lock-out fits; `1e9` is a typo).
MAX_SECONDS = 7 * 24 * 3600.0


@overload
def checked_seconds(name: str, value: object, *, allow_zero: bool = ..., allow_none: Literal[False] = ...,
                    maximum: float = ..., error: Callable[[str], Exception] = ...) -> float: ...


@overload
def checked_seconds(name: str, value: object, *, allow_zero: bool = ..., allow_none: bool,
                    maximum: float = ..., error: Callable[[str], Exception] = ...) -> float | None: ...


def checked_seconds(name: str, value: object, *, allow_zero: bool = False, allow_none: bool = False,
                    maximum: float = MAX_SECONDS, error: Callable[[str], Exception] = ValueError) -> float | None:
    """`value` when it is a number of seconds in (0, `maximum`] (`[0, maximum]` with `allow_zero`; None passes
    with `allow_none`).

    Raises:
        `error(message)`, the message naming `name`, the rule and the value.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 < value <= maximum or (allow_zero and value == 0):
            return value
        if maximum < value < math.inf:
            raise error(f"{name} must be at most {maximum:g} seconds, got {_shown(value)}")
    elif value is None and allow_none:
        return None
    raise error(f"{name} must be a finite number of seconds {'>=' if allow_zero else '>'} 0, got {_shown(value)}")


def checked_int(name: str, value: object, low: int, high: float = math.inf,
                error: Callable[[str], Exception] = ValueError) -> int:
    """`value` when it is an `int` (not a bool) in [low, high]; else `error(message)` naming `name`."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    top = f" and <= {high}" if high < math.inf else ""
    raise error(f"{name} must be an integer >= {low}{top}, got {_shown(value)}")


def checked_number(name: str, value: object, low: float, high: float,
                   error: Callable[[str], Exception] = ValueError) -> float:
    """`value` when it is an `int` or `float` (not a bool, not NaN) in [low, high]; else `error(message)`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise error(f"{name} must be a number in [{low:g}, {high:g}], got {_shown(value)}")


def _shown(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:  # repr() refuses integers of more than 4,300 digits
        return "a huge integer"
    return f"{value!r:.60}"
