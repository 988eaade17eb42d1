"""Reading JSON out of free text, for agents: models wrap JSON in prose and Markdown fences, add trailing commas, or
send an object where an array was asked for. `extract_json`, `to_string_list` and `best_category` accept all of that,
return the documented type and never raise on a bad reply (README "Agents")."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["best_category", "extract_json", "to_string_list"]

_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
# Where a JSON object or array can start: "{" before a key or "}", "[" before a value or "]".
_OPENER = re.compile(r'\{(?=\s*["}])|\[(?=\s*[\]\["{\-0-9tfn])')
_BULLET = re.compile(r"^\s*(?:[-*•+]+|\d+[.)])\s+")
_DECODER = json.JSONDecoder()
_MISSING = object()
#: Work allowed for failed decode attempts while scanning prose: FACTOR x the text length + BASE characters.
SCAN_BUDGET_FACTOR = 8
SCAN_BUDGET_BASE = 200_000
RECURSION_COST = 5_000


def extract_json(text: str, expect: type[dict[str, Any]] | type[list[Any]] | None = None) -> Any:
    """The JSON value in a model reply, or None when there is none.

    Tries the whole reply, then fenced blocks (```json ... ```), then values embedded in prose (scanned with
    `json.JSONDecoder.raw_decode`, so nested objects and arrays come out whole; the longest value wins); then the same
    again with trailing commas removed. With `expect`, a value of that type is preferred over other values:
    `extract_json('Sure! ```json\n{"a": [1, 2]}\n```')` -> `{"a": [1, 2]}`.
    """
    if not isinstance(text, str):
        return None
    found: list[Any] = []
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        found = _json_candidates(attempt)
        if found:
            break
    if expect is not None:
        found = [value for value in found if isinstance(value, expect)] or found
    return found[0] if found else None


def _decode_whole(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


def _json_candidates(text: str) -> list[Any]:
    whole = _decode_whole(text.strip())
    if whole is not _MISSING:
        return [whole]
    fenced = [_decode_whole(block.group(1).strip()) for block in _FENCE.finditer(text)]
    fenced = [value for value in fenced if value is not _MISSING]
    return fenced or _embedded_values(text)


def _embedded_values(text: str) -> list[Any]:
    """JSON objects and arrays found in prose, longest first.

    Each `{` or `[` is tried with `raw_decode`; a success skips past the value. Failed attempts are charged the text
    they scanned, and scanning stops when that passes a budget linear in the text, so that pathological replies
    (thousands of unclosed brackets) cost milliseconds instead of seconds.
    """
    embedded: list[tuple[int, Any]] = []
    budget = SCAN_BUDGET_FACTOR * len(text) + SCAN_BUDGET_BASE
    position = 0
    while budget > 0 and (match := _OPENER.search(text, position)) is not None:
        start = match.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            budget -= exc.pos - start + 1
            position = start + 1
            continue
        except RecursionError:
            budget -= RECURSION_COST
            position = start + 1
            continue
        embedded.append((end - start, value))
        position = end
    return [value for _, value in sorted(embedded, key=lambda item: -item[0])]


_LIST_KEYS = ("insights", "key_insights", "items", "results", "findings", "key_findings", "recommendations")
_TEXT_KEYS = ("insight", "text", "description", "summary", "title", "content", "name")


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, Mapping):
        for key in _TEXT_KEYS:
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return json.dumps(item, ensure_ascii=False, default=str)
    return "" if item is None else json.dumps(item, ensure_ascii=False, default=str)


def to_string_list(value: Any, fallback_text: str = "") -> list[str]:
    """A list of non-empty strings out of whatever a model sent.

    A list gives its items (objects by their text field); an object gives its first list value (preferring keys such
    as "insights"); a string gives itself. When that yields nothing (or for anything else), the non-empty lines of
    `fallback_text`, bullets removed.
    """
    if isinstance(value, Mapping):
        lists = [value[key] for key in _LIST_KEYS if isinstance(value.get(key), list)]
        lists += [item for item in value.values() if isinstance(item, list)]
        value = lists[0] if lists else [item for item in value.values() if isinstance(item, str)]
    if isinstance(value, str):
        value = [value]
    items = [_item_text(item) for item in value] if isinstance(value, list) else []
    if not any(items):
        lines = (_BULLET.sub("", line).strip() for line in fallback_text.splitlines())
        items = [line for line in lines if not line.startswith("```")]
    return [item for item in items if item]


def _normalise_label(text: str) -> str:
    return re.sub(r"[^\w\s-]", " ", text.casefold()).strip()


def best_category(reply: str, categories: list[str]) -> str:
    """The category a classification reply names.

    An exact answer wins; else the category mentioned first as a whole word or phrase (the longest one when two start
    at the same place, so "smart home" beats "home"); else the closest spelling; else the first category.
    """
    answer = _normalise_label(re.sub(r"^\s*category\s*:", "", reply, flags=re.IGNORECASE))
    labels = {_normalise_label(category): category for category in categories}
    if answer in labels:
        return labels[answer]
    mentions = []
    for label, category in labels.items():
        match = re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", answer) if label else None
        if match is not None:
            mentions.append((match.start(), -len(label), category))
    if mentions:
        return min(mentions)[2]
    close = difflib.get_close_matches(answer, list(labels), n=1, cutoff=0.6)
    return labels[close[0]] if close else categories[0]
