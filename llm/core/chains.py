"""The one walk over an exception's chain, for the code that looks underneath an error.

`exception_chain(exc)` yields every exception linked to `exc` (`__cause__`, `__context__`, exception group members)
once each, so a cycle ends the walk; `as_printed=True` follows only the chain a traceback prints (the cause, else the
context unless `raise ... from None` suppressed it).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["exception_chain"]


def exception_chain(exc: BaseException, *, as_printed: bool = False) -> Iterator[BaseException]:
    """`exc`, then the exceptions chained to it, depth first (the cause before the context), each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(reversed(_links(item, as_printed)))


def _links(exc: BaseException, as_printed: bool) -> list[BaseException]:
    if as_printed:
        following = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        return [following] if following is not None else []
    links = [link for link in (exc.__cause__, exc.__context__) if link is not None]
    if isinstance(exc, BaseExceptionGroup):
        links.extend(exc.exceptions)
    return links
