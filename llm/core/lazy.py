"""Module attributes imported from their homes on first use, so that importing a package stays cheap and a lower
layer can offer a name from a higher one without importing it (`llm`, `llm.base`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes", "lazy_module"]


def lazy_attributes(module: str, homes: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `module`: `name` is imported from `homes[name]` on first use and kept in
    `namespace` (the module's `globals()`), so later lookups are plain attribute reads."""

    def load(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return load


def lazy_module(module: str, homes: Mapping[str, str], namespace: dict[str, Any],
                exported: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__` (which lists `exported`, its `__all__`), loading from `homes`."""
    return lazy_attributes(module, homes, namespace), lambda: sorted(exported)
