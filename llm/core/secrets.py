"""Keys out of error text: `redact` masks secrets in a string, `scrub_exception` in a whole exception chain (message,
`args`, notes, JSON body and request headers of every exception in it), so that a printed traceback never shows a key
(README "Errors"). Masked: the backend's configured key and whatever `SECRET_PATTERNS` and `SECRET_HEADERS` match.
A URL that carries a password (a Redis URL) is held as a `SecretURL`, which prints as `mask_url` shows it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llm.core.chains import exception_chain

__all__ = ["MASK", "SecretURL", "mask_url", "redact", "redact_json", "scrub_exception"]

MASK = "[REDACTED]"

#: Shapes of secrets, whatever key is configured. Group 1, when present, is kept (the header or parameter name).
SECRET_PATTERNS = re.compile(
    r"\bsk-[A-Za-z0-9_\-*.]{6,}"  # OpenAI (sk-..., sk-proj-...), Anthropic (sk-ant-...), DeepSeek; vendors mask with *
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|(?i:(bearer\s+))[A-Za-z0-9._~+/=\-*]{6,}"
    r"|(?i:((?:x-goog-api-key|x-api-key|api[-_]?key|authorization)[\"']?\s*[:=]\s*[\"']?))[^\"'\s,;}&]{4,}"
    r"|(?i:([?&]key=))[^&\s\"']+"
    r"|(//[^:/@\s]*:)[^@\s/]+(?=@)"  # the password of a URL's userinfo (redis://user:password@host)
)

#: Request headers that carry credentials.
SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization")

#: The shortest configured key masked literally (shorter ones would mask ordinary words).
MIN_LITERAL = 6


def _mask(match: re.Match[str]) -> str:
    kept = next((group for group in match.groups() if group), "")
    return f"{kept}{MASK}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the given secrets and anything shaped like a key replaced by `MASK`."""
    for secret in secrets:
        if secret and len(secret) >= MIN_LITERAL and secret in text:
            text = text.replace(secret, MASK)
    return SECRET_PATTERNS.sub(_mask, text)


def redact_json(value: Any, secrets: tuple[str, ...] = (), depth: int = 0) -> Any:
    """A JSON-like value (an error body, a settings dump) with every string redacted; other objects as they are."""
    if isinstance(value, str):
        return redact(value, secrets)
    if depth > 20:
        return value
    if isinstance(value, Mapping):
        return {key: redact_json(item, secrets, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_json(item, secrets, depth + 1) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):  # a named tuple is an object, not JSON
        return tuple(redact_json(item, secrets, depth + 1) for item in value)
    return value


#: Query parameters of a URL that carry a credential (redis-py reads `?password=` as the password).
_SECRET_QUERY = frozenset({"password", "pass", "token", "key", "api_key", "secret"})


def mask_url(url: str) -> str:
    """`url` with its credentials replaced by `MASK`: the password of its userinfo (all of a userinfo without a
    colon, which may be a token) and the values of `_SECRET_QUERY` parameters; where it points stays readable."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon else MASK
    query = [(name, MASK if name.lower() in _SECRET_QUERY else value)
             for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}", query=urlencode(query, safe="[]")))


class SecretURL(str):
    """A URL that may carry a password: equal to and used as the plain string, printed (`repr`, and so in any
    dataclass or pydantic repr holding it) as `mask_url` shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url(self))


def _scrub_headers(holder: Any) -> None:
    """Mask the credential headers of a request object (httpx / httpx2 `Request`), in place."""
    headers = getattr(holder, "headers", None)
    if not isinstance(headers, MutableMapping):
        return
    for name in SECRET_HEADERS:
        try:
            if name in headers:
                headers[name] = MASK
        except Exception:  # an immutable header view: nothing to mask in place
            return


def _safe_request_info(info: Any) -> Any:
    """aiohttp's `RequestInfo` (a named tuple printed with its headers) rebuilt with the headers dropped."""
    if isinstance(info, tuple) and hasattr(info, "headers") and hasattr(info, "_replace"):
        try:
            return info._replace(headers={})
        except Exception:  # not the tuple we know
            return None
    return info


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    """An exception's argument or attribute with its secrets masked: text and JSON-like values redacted, a request
    description's headers dropped; anything else as it is."""
    if hasattr(value, "_fields"):
        return _safe_request_info(value)
    if isinstance(value, str | Mapping | list | tuple):
        return redact_json(value, secrets)
    return value


def _scrub_one(exc: BaseException, secrets: tuple[str, ...]) -> None:
    exc.args = tuple(_scrub_value(arg, secrets) for arg in exc.args)
    for name, value in list(vars(exc).items()):
        if name.startswith("__"):
            continue
        new = _scrub_value(value, secrets)
        if new is not value:
            with contextlib.suppress(Exception):  # a read-only attribute stays as it is
                setattr(exc, name, new)
    for holder in (getattr(exc, "request", None), getattr(getattr(exc, "response", None), "request", None)):
        if holder is not None:
            _scrub_headers(holder)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact(note, secrets) if isinstance(note, str) else note for note in notes]


def scrub_exception(exc: BaseException, *secrets: str | None) -> BaseException:
    """Mask secrets in `exc` and every exception chained to it, in place; returns `exc`."""
    known = tuple(secret for secret in secrets if secret)
    for item in exception_chain(exc):
        with contextlib.suppress(Exception):  # scrubbing must never replace the error being reported
            _scrub_one(item, known)
    return exc
