"""`checked_seconds`: the one check of a duration that comes from outside (settings, a policy, a backend's config).

NaN compares false with everything and would silently disable every bound built from it; infinity, or an absurd
value, would wait forever; a bool is not a number of seconds. Each caller names its own error type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

__all__ = ["MAX_SECONDS", "checked_seconds"]

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


def _shown(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:  # repr() refuses integers of more than 4,300 digits
        return "a huge integer"
    return repr(value)
